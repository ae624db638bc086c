"""Team API keys: one key per team, its limits, kept as hashes only.

The source of truth is a JSON file on the operator's machine, outside git
(`litellm_team_keys_file`); the deploy and the `fab keys.*` tasks copy the same rendered bytes to
every gateway as `team-keys.json`, which the proxy's auth hook re-reads when it changes (no
restart, no request dropped). A key is shown once when made; only its SHA-256 is stored.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The seed's per-key limits.
LIMIT_DEFAULTS = {"rpm": 60, "max_parallel_requests": 10, "max_tokens": 2048, "timeout": 30}
LIMIT_RANGES = {"rpm": (1, 100_000), "max_parallel_requests": (1, 10_000), "max_tokens": (1, 1_000_000),
                "timeout": (1, 3600)}
TEAM = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class TeamKeyError(ValueError):
    pass


@dataclass(frozen=True)
class TeamKey:
    team: str
    sha256: str
    rpm: int
    max_parallel_requests: int
    max_tokens: int
    timeout: int
    created: str
    rotated: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "sk-" + secrets.token_hex(32)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def check_limits(limits: dict[str, Any]) -> dict[str, int]:
    checked = {}
    for name, value in limits.items():
        if name not in LIMIT_RANGES:
            raise TeamKeyError(f"unknown limit {name!r}; limits are {', '.join(LIMIT_RANGES)}")
        low, high = LIMIT_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise TeamKeyError(f"{name}={value!r} is out of range; use a whole number from {low} to {high}")
        checked[name] = value
    return checked


class KeyStore:
    """The operator-side file: read, changed under a lock, written atomically 0600."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    def read(self) -> dict[str, TeamKey]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as error:
            raise TeamKeyError(f"{self.path} is not valid JSON ({error}); restore it from your backup") from None
        return {team: TeamKey(team=team, **entry) for team, entry in raw.get("keys", {}).items()}

    def _write(self, keys: dict[str, TeamKey]) -> None:
        data = {"version": 1,
                "keys": {t: {k: v for k, v in asdict(key).items() if k != "team"} for t, key in sorted(keys.items())}}
        temp = self.path.with_suffix(".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data, indent=2) + "\n")
        os.replace(temp, self.path)

    @contextmanager
    def changing(self) -> Iterator[dict[str, TeamKey]]:
        """Yield the keys to change; they are written back when the block ends without error."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys = self.read()
            yield keys
            self._write(keys)

    def create(self, team: str, **limits: int) -> str:
        if not TEAM.match(team):
            raise TeamKeyError(f"team {team!r}: use lower-case letters, digits and . _ - (at most 63)")
        limits = {**LIMIT_DEFAULTS, **check_limits(limits)}
        key = new_key()
        with self.changing() as keys:
            if team in keys:
                raise TeamKeyError(f"team {team!r} already has a key; rotate it instead "
                                   f"(fab keys.rotate --team {team})")
            now = _now()
            keys[team] = TeamKey(team=team, sha256=digest(key), created=now, rotated=now, **limits)
        return key

    def rotate(self, team: str) -> str:
        key = new_key()
        with self.changing() as keys:
            old = self._existing(keys, team)
            keys[team] = TeamKey(**{**asdict(old), "sha256": digest(key), "rotated": _now()})
        return key

    def set_limits(self, team: str, **limits: int) -> TeamKey:
        """Change some of a team's limits; its key stays the same."""
        checked = check_limits(limits)
        with self.changing() as keys:
            old = self._existing(keys, team)
            keys[team] = TeamKey(**{**asdict(old), **checked})
        return keys[team]

    def revoke(self, team: str) -> None:
        with self.changing() as keys:
            self._existing(keys, team)
            del keys[team]

    @staticmethod
    def _existing(keys: dict[str, TeamKey], team: str) -> TeamKey:
        if team not in keys:
            raise TeamKeyError(f"no key for team {team!r}; teams: {', '.join(sorted(keys)) or 'none'}")
        return keys[team]


def host_file(keys: dict[str, TeamKey]) -> str:
    """What the gateways hold: hash -> team and limits. Deterministic for checksum comparison."""
    entries = {
        key.sha256: {"team": key.team, "rpm": key.rpm, "max_parallel_requests": key.max_parallel_requests,
                     "max_tokens": key.max_tokens, "timeout": key.timeout}
        for key in keys.values()
    }
    return json.dumps({"version": 1, "keys": dict(sorted(entries.items()))}, indent=2, sort_keys=True) + "\n"
