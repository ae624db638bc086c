"""Operator tasks for the gateway fleet: `fab --list`, `fab --help TASK`.

Hosts come from the deploy's own inventory (`litellm.inventory` in a fabric.yaml, or
FABRIC_LITELLM_INVENTORY=path; default inventory.py); every task works on the whole fleet at once unless `--only` (or
fab's `-H`) narrows it. A host that cannot be reached is reported and the others still are; a
task exits non-zero when anything it looked at is unhealthy.
"""
from __future__ import annotations

import hashlib
import io
import json
import shlex
import sys
import threading
from pathlib import Path

from fabric import Connection, task
from invoke import Collection
from invoke.exceptions import Exit

from checks.backends import check_backends, get_json
from gateway import render
from gateway.commands import LOGROTATE_PATH, REDIS_UNIT_PATH, UNIT_PATH, smoke_command, validate_command
from gateway.remote import Fleet, Gateway, Outcome, load_fleet, on_each
from gateway.settings import SettingsError
from gateway.table import table
from gateway.team_keys import HOST_FILE_NAME, KeyStore, TeamKeyError, host_file

REPO = Path(__file__).resolve().parent
STATUS_PROBE = (REPO / "checks" / "gateway_status.py").read_text()
ONLY_HELP = "comma-separated gateway names (or SSH addresses) to act on; default: every gateway"


def _fleet(c) -> Fleet:
    try:
        return load_fleet(c.config.litellm.inventory)
    except SystemExit as refused:  # the inventory's own settings check
        raise Exit(str(refused.code), code=2) from None
    except SettingsError as error:
        raise Exit(str(error), code=2) from None


def _gateways(c, only: str) -> tuple[Fleet, list[Gateway]]:
    fleet = _fleet(c)
    if isinstance(c, Connection) and not only:  # fab -H HOST: that host only
        only = c.original_host
    try:
        return fleet, fleet.select(only)
    except ValueError as error:
        raise Exit(str(error), code=2) from None


def _expected_files(g: Gateway, cpus: int) -> dict[str, str]:
    """SHA-256 of each file the deploy renders, as it renders them for a host with `cpus` CPUs."""
    s = g.settings.resolved(cpus)
    rendered = {
        f"{s.config_dir}/config.yaml": render.config_yaml(s, g.name),
        f"{s.config_dir}/logging.json": render.logging_json(s, g.name),
        f"{s.config_dir}/redis.conf": render.redis_conf(s, g.name),
        UNIT_PATH: render.unit(s, g.name),
        REDIS_UNIT_PATH: render.redis_unit(s, g.name),
        LOGROTATE_PATH: render.logrotate(s, g.name),
    }
    return {path: hashlib.sha256(text.encode()).hexdigest() for path, text in rendered.items()}


def _status_of(g: Gateway, connection: Connection) -> dict:
    files = " ".join(f"--file {shlex.quote(p)}" for p in _expected_files(g, cpus=1))
    command = (f"python3 -c {shlex.quote(STATUS_PROBE)} --url {shlex.quote(g.settings.local_url)} "
               f"--venv {shlex.quote(g.settings.venv_dir)} {files}")
    result = g.run(connection, command)
    if not result.ok:
        raise RuntimeError(result.stderr.strip() or f"status probe exited {result.exited}")
    return json.loads(result.stdout)


def _gateway_row(g: Gateway, outcome: Outcome) -> tuple[list[str], bool]:
    if outcome.error:
        return [g.name, "UNREACHABLE", "-", "-", "-", "-", "-", "-", "-", outcome.error], False
    st = outcome.value
    drift = [Path(p).name for p, digest in _expected_files(g, st["cpus"]).items() if st["files"].get(p) != digest]
    version_ok = st["version"] == g.settings.version
    limits_shared = st["redis"] == "active"
    healthy = (st["active"] == "active" and st["listening"] and st["readiness"] == "healthy" and not drift
               and version_ok and limits_shared)
    memory = f"{st['rss_kib'] // 1024} MiB" if st.get("rss_kib") else "-"
    return [
        g.name,
        f"{st['active']}/{st['sub']}",
        st["since"] or "-",
        st["restarts"] or "0",
        memory,
        "yes" if st["listening"] else "NO",
        st["readiness"],
        st["version"] if version_ok else f"{st['version']} (want {g.settings.version})",
        "shared" if limits_shared else f"PER WORKER (litellm-redis {st['redis']})",
        "none" if not drift else "DRIFT: " + ", ".join(drift),
    ], healthy


@task(help={"only": ONLY_HELP})
def status(c, only=""):
    """One table of the fleet: gateways (service, memory, port, readiness, version, shared limits, drift), then backends."""
    fleet, gateways = _gateways(c, only)
    outcomes = on_each(gateways, _status_of)
    rows, healthy = [], True
    for g, outcome in zip(gateways, outcomes):
        row, ok = _gateway_row(g, outcome)
        rows.append(row)
        healthy &= ok
    print(table(("GATEWAY", "SERVICE", "SINCE", "RESTARTS", "MEMORY", "PORT", "READINESS", "LITELLM", "LIMITS", "CONFIG"), rows))
    print()
    backend_rows = []
    results = check_backends(fleet.backends, fleet.models, gateways[0].settings.preflight_timeout, fleet.resolver())
    for backend in fleet.backends:
        mine = {r.check: r for r in results if r.backend == backend.name}
        reachable = mine.get("tcp") and mine["tcp"].ok
        version = mine["version"].detail if "version" in mine and mine["version"].ok else "-"
        models = mine.get("models")
        present = [m for m in backend.models] if models and models.ok else []
        detail = ("all present: " + ", ".join(present)) if present else (
            (models.detail + "; fix: " + models.fix) if models else (mine["tcp"].detail if "tcp" in mine else "-"))
        healthy &= bool(reachable and models and models.ok)
        backend_rows.append([backend.name, f"{backend.address}:{backend.port}", "yes" if reachable else "NO", version, detail])
    print(table(("BACKEND", "ADDRESS", "REACHABLE", "VERSION", "MODELS"), backend_rows))
    if not healthy:
        raise Exit("fleet is NOT healthy (see the rows above)", code=1)


class _Prefixed(io.TextIOBase):
    """Writes whole lines to stdout, each behind a host prefix; safe across threads."""

    lock = threading.Lock()

    def __init__(self, prefix: str) -> None:
        self.prefix, self.pending = prefix, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        if lines:
            with self.lock:
                sys.stdout.write("".join(f"{self.prefix}{line}\n" for line in lines))
                sys.stdout.flush()
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.write("\n")


@task(help={
    "only": ONLY_HELP,
    "lines": "how many recent lines per host (default 50)",
    "follow": "keep printing new lines until interrupted",
    "since": "only lines since this time, as journalctl takes it ('10 min ago', '2025-09-16 10:00')",
    "grep": "only lines matching this regular expression",
    "file": "read /var/log/litellm/proxy.log instead of the journal",
})
def logs(c, only="", lines=50, follow=False, since="", grep="", file=False):
    """The gateway's log: its journal (or the log file), with -n, --follow, --since and --grep."""
    _, gateways = _gateways(c, only)
    if file:
        path = f"{gateways[0].settings.log_dir}/proxy.log"
        command = f"tail -n {int(lines)} {'-F ' if follow else ''}{shlex.quote(path)}"
        if grep:
            command += f" | grep --line-buffered -E -- {shlex.quote(grep)}"
        if since:
            raise Exit("--since works on the journal only; drop --file", code=2)
    else:
        command = f"journalctl -u litellm.service --no-pager -o short-iso -n {int(lines)}"
        command += f" --since {shlex.quote(since)}" if since else ""
        command += f" --grep {shlex.quote(grep)}" if grep else ""
        command += " -f" if follow else ""
    several = len(gateways) > 1

    def read(g: Gateway, connection: Connection):
        out = _Prefixed(f"{g.name}: " if several else "")
        result = g.run(connection, command, hide=True, out_stream=out)
        out.flush()
        # journalctl --grep exits 1 when nothing matched: that is an answer, not a failure
        if not result.ok and not (grep and result.exited == 1):
            raise RuntimeError(result.stderr.strip())

    failed = [o for o in on_each(gateways, read) if o.error]
    for outcome in failed:
        print(f"{outcome.host}: {outcome.error}", file=sys.stderr)
    if failed:
        raise Exit(f"no logs from {', '.join(o.host for o in failed)}", code=1)


def _verdicts(outcomes: list[Outcome], column: str, failed: str, message: str) -> None:
    """A table of per-gateway (ok, detail) outcomes; exit non-zero if any failed or was unreachable."""
    rows, bad = [], False
    for outcome in outcomes:
        ok, detail = outcome.value if not outcome.error else (False, outcome.error)
        bad |= not ok
        rows.append([outcome.host, "ok" if ok else failed, detail])
    print(table(("GATEWAY", column, "DETAIL"), rows))
    if bad:
        raise Exit(message, code=1)


def _validate(g: Gateway, connection: Connection) -> tuple[bool, str]:
    result = g.run(connection, validate_command(g.settings, g.config_file) + " 2>&1")
    lines = [line for line in result.stdout.splitlines() if "LiteLLM: config" in line or "rror" in line]
    return result.ok, (lines[-1] if lines else result.stdout.strip()[-300:])


@task(help={"only": ONLY_HELP})
def validate(c, only=""):
    """Check each gateway's config with its installed LiteLLM (--validate_config); change nothing."""
    _, gateways = _gateways(c, only)
    _verdicts(on_each(gateways, _validate), "CONFIG", "INVALID", "a config is invalid or a host could not be checked")


@task(help={"only": ONLY_HELP, "ready_timeout": "seconds each gateway may take to answer again (default 120)"})
def restart(c, only="", ready_timeout=120):
    """Rolling restart, one gateway at a time: validate, restart, wait until it answers; stop at the first failure."""
    _, gateways = _gateways(c, only)
    for index, g in enumerate(gateways):
        left = ", ".join(x.name for x in gateways[index + 1:]) or "none"
        try:
            with g.connection() as connection:
                ok, detail = _validate(g, connection)
                if not ok:
                    raise Exit(f"{g.name}: config is invalid ({detail}); NOT restarted, the running service keeps "
                               f"serving. Roll stopped; not restarted: {left}", code=1)
                g.run(connection, "systemctl restart litellm.service")
                check = g.run(connection, smoke_command(g.settings, g.settings.local_url, int(ready_timeout)))
                if not check.ok:
                    journal = g.run(connection, "journalctl -u litellm.service -n 20 --no-pager -o short-iso").stdout
                    raise Exit(f"{g.name} did not come back:\n{check.stdout}{journal}\n"
                               f"Roll stopped at {g.name}; not restarted: {left}", code=1)
        except Exit:
            raise
        except Exception as error:  # noqa: BLE001
            raise Exit(f"{g.name}: unreachable or failed ({type(error).__name__}: {error}). "
                       f"Roll stopped; not restarted: {left}", code=1) from None
        print(f"{g.name}: restarted and answering ({check.stdout.strip().splitlines()[-1]})")


@task
def health(c):
    """Per model and backend, without completions: which backends have each model, and which have it loaded."""
    fleet = _fleet(c)
    resolve = fleet.resolver()
    timeout = fleet.gateways[0].settings.preflight_timeout
    by_name = {m.name: m for m in fleet.models}
    rows, healthy = [], True
    for backend in fleet.backends:
        try:
            address = resolve(backend.address)
            have = {m["name"] for m in get_json(address, backend, "/api/tags", timeout).get("models", [])}
            loaded = {m["name"]: m.get("expires_at", "") for m in get_json(address, backend, "/api/ps", timeout).get("models", [])}
        except Exception as error:  # noqa: BLE001
            healthy = False
            rows += [[name, backend.name, by_name[name].tag, "UNREACHABLE", "-", str(error)] for name in backend.models]
            continue
        for name in backend.models:
            tag = by_name[name].tag if ":" in by_name[name].tag else f"{by_name[name].tag}:latest"
            present = tag in have
            healthy &= present
            rows.append([name, backend.name, tag, "yes" if present else "MISSING",
                         "yes" if tag in loaded else "no",
                         f"loaded until {loaded[tag]}" if tag in loaded else ("" if present else f"fix: ollama pull {tag}")])
    rows.sort()
    print(table(("MODEL", "BACKEND", "TAG", "PRESENT", "LOADED", "DETAIL"), rows))
    if not healthy:
        raise Exit("a model is missing or a backend is unreachable", code=1)


@task(help={
    "only": ONLY_HELP,
    "port": "spare port for the throwaway proxy on 127.0.0.1 (default: the gateway port + 1)",
})
def trial(c, only="", port=0):
    """Start a throwaway proxy with the host's config on a spare port, make one completion, stop it."""
    _, gateways = _gateways(c, only)

    def attempt(g: Gateway, connection: Connection) -> tuple[bool, str]:
        s = g.settings
        spare = int(port) or s.port + 1
        unit = f"litellm-trial-{spare}"
        start = " ".join([
            "systemd-run", f"--unit={unit}", "--collect", "--quiet",
            f"-p User={s.user}", f"-p Group={s.group}", f"-p EnvironmentFile={g.env_file}",
            f"-p WorkingDirectory={s.home}", "-p NoNewPrivileges=yes", "-p ProtectSystem=strict", "-p PrivateTmp=yes",
            f"{s.venv_dir}/bin/litellm", "--config", g.config_file, "--host", "127.0.0.1", "--port", str(spare),
        ])
        busy = g.run(connection, f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {spare}), 1)'")
        if busy.ok:
            return False, f"port {spare} is in use on the host; pass --port"
        started = g.run(connection, start)
        if not started.ok:
            return False, f"could not start the trial proxy: {started.stderr.strip()}"
        try:
            check = g.run(connection, smoke_command(g.settings, f"http://127.0.0.1:{spare}", 120))
            return check.ok, " | ".join(check.stdout.strip().splitlines())
        finally:
            g.run(connection, f"systemctl stop {unit}")

    _verdicts(on_each(gateways, attempt), "TRIAL", "FAILED", "a trial failed; the services were left alone")


def _key_store(fleet: Fleet) -> KeyStore:
    paths = {g.settings.team_keys_file for g in fleet.gateways}
    if len(paths) != 1 or None in paths:
        raise Exit("set one litellm_team_keys_file for the whole fleet in the inventory (a path outside git)", code=2)
    return KeyStore(paths.pop())


def _push_keys(fleet: Fleet, store: KeyStore) -> None:
    """Install the store's hashes on every gateway, atomically; the auth hook picks them up at once."""
    content = host_file(store.read())

    def push(g: Gateway, connection: Connection) -> None:
        dest = f"{g.settings.config_dir}/{HOST_FILE_NAME}"
        temp = f"/tmp/litellm-team-keys-{g.settings.port}.json"
        connection.put(io.StringIO(content), remote=temp)
        result = g.run(connection, f"install -m 0640 -o root -g {g.settings.group} {temp} {dest}.new "
                                   f"&& mv -f {dest}.new {dest} && rm -f {temp}")
        if not result.ok:
            raise RuntimeError(result.stderr.strip())

    failed = [o for o in on_each(list(fleet.gateways), push) if o.error]
    done = len(fleet.gateways) - len(failed)
    print(f"team keys installed on {done} of {len(fleet.gateways)} gateway(s); in effect at once, no restart")
    if failed:
        for outcome in failed:
            print(f"{outcome.host}: NOT updated: {outcome.error}", file=sys.stderr)
        raise Exit(f"saved in {store.path}, but not on {', '.join(o.host for o in failed)}: "
                   "run `fab keys-push` (or the deploy) once they are reachable", code=1)


def _key_change(c, change) -> None:
    fleet = _fleet(c)
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
def keys_create(c, team, rpm=60, max_parallel=10, max_tokens=2048, timeout=30):
    """Make a team's API key with its limits, shown once (only its hash is kept), and install it everywhere."""
    limits = {"rpm": int(rpm), "max_parallel_requests": int(max_parallel), "max_tokens": int(max_tokens), "timeout": int(timeout)}
    _key_change(c, lambda store: f"team {team} key (shown once, store it now): {store.create(team, **limits)}")


@task
def keys_list(c):
    """The teams' keys: team, limits, created, last rotated (never a key)."""
    keys = _key_store(_fleet(c)).read()
    print(table(("TEAM", "RPM", "PARALLEL", "MAX_TOKENS", "TIMEOUT", "CREATED", "ROTATED"),
                [[k.team, k.rpm, k.max_parallel_requests, k.max_tokens, k.timeout, k.created, k.rotated]
                 for k in sorted(keys.values(), key=lambda k: k.team)]))


@task(help={"team": LIMIT_HELP["team"]})
def keys_rotate(c, team):
    """Give a team a new key (shown once); its old key stops working on every gateway at once."""
    _key_change(c, lambda store: f"team {team} new key (shown once, store it now): {store.rotate(team)}")


@task(help={"team": LIMIT_HELP["team"]})
def keys_revoke(c, team):
    """Revoke a team's key on every gateway at once (requests already in flight finish)."""
    _key_change(c, lambda store: store.revoke(team))


@task
def keys_push(c):
    """Install the team keys file's hashes on every gateway again (after a host was unreachable)."""
    fleet = _fleet(c)
    _push_keys(fleet, _key_store(fleet))


ns = Collection(status, logs, restart, health, validate, trial, keys_create, keys_list, keys_rotate, keys_revoke, keys_push)
ns.configure({"litellm": {"inventory": str(REPO / "inventory.py")}})
