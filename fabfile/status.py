"""`fab status`: one table of the fleet, gateways then backends."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json

from fabric import Connection, task
from invoke.exceptions import Exit

from fabfile.common import ONLY_HELP, gateways_of
from gateway.commands import status_command
from gateway.facts import EnvFileState, ManagedFiles
from gateway.lock import read_lock
from gateway.monitoring.prometheus import PrometheusError, Watcher, watchers
from gateway.preflight.backends import check_backends
from gateway.remote import Gateway, Outcome, on_each
from gateway.services import store
from gateway.services.base import ManagedFile
from gateway.services.registry import managed_files
from gateway.table import table

SEPARATOR = "----litellm-gateway-status----"


def expected_files(g: Gateway, cpus: int) -> list[ManagedFile]:
    """The managed-files table as the deploy renders it for this gateway on a host with `cpus` CPUs."""
    return managed_files(g.settings.resolved(cpus), g.name, issue=False)


def drifted(table_: list[ManagedFile], present: dict, secret_state: dict | None) -> list[str]:
    """Names of the files on the host that differ from the table: content, owner, group or mode."""
    names = []
    for f in table_:
        if f.secret:
            state = secret_state or {}
            same = (state.get("settings_sha256") == f.sha256
                    and (state.get("mode"), state.get("user"), state.get("group")) == (f.mode, f.user, f.group))
        else:
            same = present.get(f.path) == {"user": f.user, "group": f.group, "mode": f.mode, "sha256": f.sha256}
        if not same:
            names.append(f.name)
    return names


def _status_of(g: Gateway, connection: Connection) -> dict:
    """The host's own report, and the fingerprints of every managed file, in one SSH command."""
    layout = expected_files(g, cpus=1)  # where the files are does not depend on the CPU count
    plain = tuple(f.path for f in layout if not f.secret)
    secret = next(f.path for f in layout if f.secret)
    command = "; ".join([status_command(g.settings), f"echo {SEPARATOR}", ManagedFiles().command(paths=plain),
                         f"echo {SEPARATOR}", EnvFileState().command(path=secret)])
    result = g.run(connection, command)
    report, files, env = result.stdout.split(SEPARATOR + "\n")
    if not report.strip():
        raise RuntimeError(result.stderr.strip() or "the status probe printed nothing: deploy the gateway first")
    state = json.loads(report)
    table_ = expected_files(g, state["cpus"])
    state["drift"] = drifted(table_, ManagedFiles().process(files.splitlines()),
                             EnvFileState().process(env.splitlines()))
    return state


def _gateway_row(g: Gateway, outcome: Outcome) -> tuple[list[str], bool]:
    if outcome.error:
        return [g.name, "UNREACHABLE", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", outcome.error], False
    st = outcome.value
    drift = st["drift"]
    version_ok = st["version"] == g.settings.version
    limits_shared = st["services"].get(store.REDIS.unit) == "active"
    down = [f"{unit} {state}" for unit, state in st["services"].items() if state != "active"]
    lock, _ = read_lock(g.settings.requirements)
    want = hashlib.sha256(lock.encode()).hexdigest() if lock else None
    lock_ok = want is not None and st.get("lock") == want
    lock_cell = (f"{want[:10]} ok" if lock_ok else
                 f"{(st.get('lock') or 'none')[:10]} (want {want[:10] if want else 'a lock: python -m gateway.lock'})")
    front_ok = st["front"] == "active" and (st.get("front_server") or "").startswith("UP")
    healthy = (st["active"] == "active" and st["listening"] and st["readiness"] == "healthy" and not drift
               and version_ok and limits_shared and lock_ok and front_ok and not down)
    memory = f"{st['rss_kib'] // 1024} MiB" if st.get("rss_kib") else "-"
    return [
        g.name,
        f"{st['active']}/{st['sub']} {st['instance']}" + (f"; NOT RUNNING: {', '.join(down)}" if down else ""),
        st["since"] or "-",
        st["restarts"] or "0",
        memory,
        "yes" if st["listening"] else "NO",
        f"{st['front']}: {st.get('front_server') or 'no instance'}" if front_ok else
        f"NOT SERVING ({st['front']}; " + ", ".join(f"{k} {v}" for k, v in st["front_servers"].items()) + ")",
        st["readiness"],
        st["version"] if version_ok else f"{st['version']} (want {g.settings.version})",
        lock_cell,
        f"{st['release'] or '-'} (rollback: {st['previous'] or 'none'})",
        "shared" if limits_shared else f"PER WORKER ({store.REDIS.unit} {st['services'].get(store.REDIS.unit)})",
        "none" if not drift else "DRIFT: " + ", ".join(drift),
    ], healthy


def fleets_of(gateways: list[Gateway], outcomes: list[Outcome]) -> dict[str, list[tuple[Gateway, Outcome]]]:
    """The inventory's fleets by address, each with its own gateways; standalone gateways belong to none."""
    fleets: dict[str, list[tuple[Gateway, Outcome]]] = {}
    for g, outcome in zip(gateways, outcomes, strict=True):
        if g.settings.fleet:
            fleets.setdefault(g.settings.fleet.address, []).append((g, outcome))
    return fleets


def print_fleet(gateways: list[Gateway], outcomes: list[Outcome]) -> bool:
    """The fleet's address, who holds it, and each gateway's state in the holder's load balancing.
    True when exactly one gateway holds it, every keepalived runs and every gateway takes requests."""
    views = {g.name: (o.value or {}).get("fleet") or {} for g, o in zip(gateways, outcomes, strict=True)}
    holders = [name for name, view in views.items() if view.get("holder")]
    fleet = next(g.settings.fleet for g in gateways if g.settings.fleet)
    seen_by = views[holders[0]] if len(holders) == 1 else next((v for v in views.values() if v.get("gateways")), {})
    rows, healthy = [], len(holders) == 1
    for g, outcome in zip(gateways, outcomes, strict=True):
        view, balanced = views[g.name], seen_by.get("gateways", {}).get(g.name, {})
        state = balanced.get("status", "unknown")
        healthy &= view.get("unit") == "active" and state.startswith("UP")
        shown_state = {"DRAIN": "DRAIN (fab undrain to end it)", "MAINT": "MAINT"}.get(state.split(" ")[0], state)
        redis = view.get("redis") or {}
        store = redis.get("role") or "DOWN"
        if redis.get("role") == "slave":
            store = "replica" + ("" if redis.get("link") == "up" else f" (link {redis.get('link')})")
        healthy &= bool(redis.get("role")) and redis.get("link", "up") in ("up", None)
        rows.append([g.name, "UNREACHABLE" if outcome.error else ("yes" if view.get("holder") else "-"),
                     view.get("unit") or "-", shown_state, str(balanced.get("in_flight", "-")), store])
    where = f"{fleet.address}" + (f" ({fleet.name})" if fleet.name else "")
    held = (f"held by {holders[0]}" if len(holders) == 1 else
            "HELD BY NOBODY: clients cannot reach the fleet" if not holders else
            f"HELD BY {len(holders)}: {', '.join(holders)}")
    print(f"FLEET {where}: {held}")
    print(table(("GATEWAY", "HOLDS ADDRESS", "KEEPALIVED", "LOAD BALANCER", "IN FLIGHT", "REDIS"), rows))
    limits_ok, line = _rate_limit_store([v.get("redis") or {} for v in views.values()], len(gateways))
    print(line)
    return healthy and limits_ok


def _rate_limit_store(views: list[dict], members: int) -> tuple[bool, str]:
    """One line on the fleet's Redis, from the sentinels' answers: the primary, replicas, sentinels."""
    answers = [v for v in views if v.get("primary")]
    if not answers:
        return False, "RATE LIMITS: NO SENTINEL ANSWERS: limits are counted per worker (see the rows above)"
    primaries = {v["primary"] for v in answers}
    best = max(answers, key=lambda v: (v.get("sentinels", 0), v.get("replicas", 0)))
    flags = best.get("primary_flags", "")
    ok = (len(primaries) == 1 and flags == "master" and best.get("sentinels") == members
          and best.get("replicas") == members - 1)
    state = "ok" if ok else "DEGRADED"
    return ok, (f"RATE LIMITS ({state}): Redis primary {', '.join(sorted(primaries))} ({flags}), "
                f"{best.get('replicas')} of {members - 1} replicas, {best.get('sentinels')} of {members} sentinels")


def print_monitoring(watcher: Watcher) -> bool:
    """The monitoring host's line and the alerts firing now; False when it does not answer or a
    critical alert fires."""
    print()
    try:
        alerts = watcher.alerts()
    except PrometheusError as error:
        print(f"MONITORING {watcher.name}: Prometheus DOWN ({error}): nothing is watching the gateways")
        return False
    print(f"MONITORING {watcher.name}: Prometheus up at {watcher.prometheus_url}, "
          f"Alertmanager {watcher.alertmanager_url}; {len(alerts)} alert(s) firing")
    rows = [[a["labels"]["alertname"], a["labels"].get("severity", "-"), a["annotations"].get("summary", ""),
             a["activeAt"][:19]]
            for a in sorted(alerts, key=lambda a: a["activeAt"])]
    if rows:
        print(table(("ALERT", "SEVERITY", "SUMMARY", "SINCE"), rows))
    return not any(a["labels"].get("severity") == "critical" for a in alerts)


@task(help={
    "only": ONLY_HELP,
    "json": "print JSON (each gateway's report, the fleets, backends, alerts) instead of tables",
})
def status(c, only="", json_=False):
    # Adjacent literals, one docstring: `fab --list` shows its first line whole.
    ("One table of the fleet: gateways (serving instance, memory, port, front, readiness, version, lock, release, "
     "shared limits, drift), then backends, then the monitoring host's alerts.")
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown) if json_ else contextlib.nullcontext():
        report = _status(c, only)
    if json_:
        print(json.dumps(report, indent=2, default=str))
    if not report["healthy"]:
        raise Exit("fleet is NOT healthy" + ("" if json_ else " (see the rows above)"), code=1)


def _status(c, only: str) -> dict:
    """Prints the tables; returns what they show, for --json."""
    fleet, gateways = gateways_of(c, only)

    outcomes = on_each(gateways, _status_of)
    rows, healthy, report = [], True, {"gateways": [], "fleets": [], "backends": [], "monitoring": []}
    for g, outcome in zip(gateways, outcomes, strict=True):
        row, ok = _gateway_row(g, outcome)
        rows.append(row)
        healthy &= ok
        report["gateways"].append({"name": g.name, "healthy": ok, "error": outcome.error, "report": outcome.value})
    print(table(("GATEWAY", "SERVICE", "SINCE", "RESTARTS", "MEMORY", "PORT", "FRONT", "READINESS", "LITELLM", "LOCK",
                 "RELEASE", "LIMITS", "CONFIG"), rows))
    print()
    for address, members in fleets_of(gateways, outcomes).items():  # each fleet judged by its own gateways
        ok = print_fleet([g for g, _ in members], [o for _, o in members])
        healthy &= ok
        report["fleets"].append({"address": address, "healthy": ok,
                                 "gateways": {g.name: (o.value or {}).get("fleet") for g, o in members}})
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
        ok = bool(reachable and models and models.ok)
        healthy &= ok
        backend_rows.append([backend.name, f"{backend.address}:{backend.port}", "yes" if reachable else "NO", version,
                             detail])
        report["backends"].append({"name": backend.name, "address": f"{backend.address}:{backend.port}",
                                   "reachable": bool(reachable), "version": version, "models": detail, "healthy": ok})
    print(table(("BACKEND", "ADDRESS", "REACHABLE", "VERSION", "MODELS"), backend_rows))
    for watcher in watchers(c.config.litellm.inventory):
        ok = print_monitoring(watcher)
        healthy &= ok
        report["monitoring"].append({"name": watcher.name, "prometheus_url": watcher.prometheus_url, "healthy": ok})
    report["healthy"] = healthy
    return report
