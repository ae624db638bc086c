"""The host's own files, which no one service owns: the host-side scripts (on_host/, run with the
host's python3 by the deploy's checks, `fab` and the units), the proxy log's rotation, the team keys."""
from __future__ import annotations

from gateway.services.base import REPO, ManagedFile, Retired, Rows, shipped
from gateway.settings import Settings

HOST_LIB = "/usr/local/lib/litellm-gateway"  # on_host/ (and the proxy's in_proxy/) are installed below it
LOGROTATE_PATH = "/etc/logrotate.d/litellm"
TEAM_KEYS = "team-keys.json"  # in the config directory; its path reaches the auth hook through litellm.env
ON_HOST_SOURCES = tuple(sorted(p.relative_to(REPO).as_posix() for p in (REPO / "on_host").glob("*.py")))


def unit_command(module: str, *arguments: str) -> str:
    """on_host.MODULE as a unit's Exec line or keepalived's script: no shell, so env sets the path.
    (`gateway.commands.on_host` is the same for a shell, over SSH.)"""
    return " ".join([f"/usr/bin/env PYTHONPATH={HOST_LIB} /usr/bin/python3 -m on_host.{module}", *arguments])


def installed_path(source: str) -> str:
    """Where a shipped source file of this repository lands on the host."""
    return f"{HOST_LIB}/{source}"


def rows(r: Rows) -> list[ManagedFile]:
    return [
        *(r.system(installed_path(source), *shipped(source), "is installed for the deploy's checks and "
                   "fab status") for source in ON_HOST_SOURCES),
        r.system(LOGROTATE_PATH, *r.template("logrotate.j2"),
                 f"rotates {r.s.log_dir}/proxy.log daily, keeps {r.s.log_keep_days} old files"),
        # Re-read by the auth hook whenever it changes: a new, rotated or revoked key needs no restart.
        r.readable(TEAM_KEYS, "the operator's litellm_team_keys_file", r.team_keys,
                   "holds the team keys' hashes and limits"),
    ]


def retired(s: Settings) -> list[Retired]:
    return []


def context(s: Settings) -> dict[str, object]:
    return {"team_keys": TEAM_KEYS, "host_lib": HOST_LIB}
