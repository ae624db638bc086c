"""`fab keys.*`: the teams' API keys, kept as hashes on the operator's machine and on every gateway."""
from __future__ import annotations

import io
import sys

from fabric import Connection, task
from invoke.exceptions import Exit

from fabfile.common import fleet_of
from gateway.remote import Fleet, Gateway, on_each
from gateway.services.base import commit_commands, stage_command, staged
from gateway.services.host import TEAM_KEYS
from gateway.services.registry import by_name, managed_files
from gateway.table import table
from gateway.team_keys import KeyStore, TeamKeyError, host_file


def _key_store(fleet: Fleet) -> KeyStore:
    paths = {g.settings.team_keys_file for g in fleet.gateways}
    if len(paths) != 1 or None in paths:
        raise Exit("set one litellm_team_keys_file for the whole fleet in the inventory (a path outside git)", code=2)
    return KeyStore(paths.pop())


def install_command(g: Gateway, content: str) -> str:
    """The deploy's own staged install of team-keys.json (gateway/services/), fed on stdin: no file in /tmp."""
    row = by_name(managed_files(g.settings.resolved(1), g.name, content, issue=False))[TEAM_KEYS]
    return " && ".join([stage_command(row), f"cat > {staged(row.path)}", *commit_commands(row)])


def _push_keys(fleet: Fleet, store: KeyStore) -> None:
    """Install the store's hashes on every gateway, atomically; the auth hook picks them up at once."""
    content = host_file(store.read())

    def push(g: Gateway, connection: Connection) -> None:
        result = g.run(connection, install_command(g, content), in_stream=io.StringIO(content))
        if not result.ok:
            raise RuntimeError(result.stderr.strip() or f"the install exited {result.exited}")

    failed = [o for o in on_each(list(fleet.gateways), push) if o.error]
    done = len(fleet.gateways) - len(failed)
    print(f"team keys installed on {done} of {len(fleet.gateways)} gateway(s); in effect at once, no restart")
    if failed:
        for outcome in failed:
            print(f"{outcome.host}: NOT updated: {outcome.error}", file=sys.stderr)
        raise Exit(f"saved in {store.path}, but not on {', '.join(o.host for o in failed)}: "
                   "run `fab keys.push` (or the deploy) once they are reachable", code=1)


def _key_change(c, change) -> None:
    fleet = fleet_of(c)
    store = _key_store(fleet)
    try:
        shown = change(store)
    except TeamKeyError as error:
        raise Exit(str(error), code=2) from None
    if shown:
        print(shown)
    _push_keys(fleet, store)


LIMIT_HELP = {
    "team": "the team's name (lower-case letters, digits, . _ -)",
    "rpm": "requests per minute (default 60)",
    "max_parallel": "requests in flight at once (default 10)",
    "max_tokens": "most tokens a request may ask for (default 2048)",
    "timeout": "seconds a request may take (default 30)",
}


@task(help=LIMIT_HELP)
def create(c, team, rpm=60, max_parallel=10, max_tokens=2048, timeout=30):
    """Make a team's API key with its limits, shown once (only its hash is kept), and install it everywhere."""
    try:
        limits = {"rpm": int(rpm), "max_parallel_requests": int(max_parallel), "max_tokens": int(max_tokens),
                  "timeout": int(timeout)}
    except ValueError as error:
        raise Exit(f"limits are whole numbers: {error}", code=2) from None
    _key_change(c, lambda store: f"team {team} key (shown once, store it now): {store.create(team, **limits)}")


@task(name="list")
def list_(c):
    """The teams' keys: team, limits, created, last rotated (never a key)."""
    try:
        keys = _key_store(fleet_of(c)).read()
    except TeamKeyError as error:
        raise Exit(str(error), code=2) from None
    print(table(("TEAM", "RPM", "PARALLEL", "MAX_TOKENS", "TIMEOUT", "CREATED", "ROTATED"),
                [[k.team, k.rpm, k.max_parallel_requests, k.max_tokens, k.timeout, k.created, k.rotated]
                 for k in sorted(keys.values(), key=lambda k: k.team)]))


@task(help={"team": LIMIT_HELP["team"]})
def rotate(c, team):
    """Give a team a new key (shown once); its old key stops working on every gateway at once."""
    _key_change(c, lambda store: f"team {team} new key (shown once, store it now): {store.rotate(team)}")


@task(help={**LIMIT_HELP, "rpm": "requests per minute", "max_parallel": "requests in flight at once",
            "max_tokens": "most tokens a request may ask for", "timeout": "seconds a request may take"})
def limits(c, team, rpm=None, max_parallel=None, max_tokens=None, timeout=None):
    """Change a team's limits, keeping its key: only those given change, in effect at once on every gateway."""
    given = {"rpm": rpm, "max_parallel_requests": max_parallel, "max_tokens": max_tokens, "timeout": timeout}
    try:
        wanted = {name: int(value) for name, value in given.items() if value is not None}
    except ValueError as error:
        raise Exit(f"limits are whole numbers: {error}", code=2) from None
    if not wanted:
        raise Exit("give at least one of --rpm, --max-parallel, --max-tokens, --timeout", code=2)

    def change(store: KeyStore) -> str:
        key = store.set_limits(team, **wanted)
        return (f"team {team}: rpm {key.rpm}, max_parallel {key.max_parallel_requests}, "
                f"max_tokens {key.max_tokens}, timeout {key.timeout} (same key)")

    _key_change(c, change)


@task(help={"team": LIMIT_HELP["team"]})
def revoke(c, team):
    """Revoke a team's key on every gateway at once (requests already in flight finish)."""
    _key_change(c, lambda store: store.revoke(team))


@task
def push(c):
    """Install the team keys file's hashes on every gateway again (after a host was unreachable)."""
    fleet = fleet_of(c)
    _push_keys(fleet, _key_store(fleet))
