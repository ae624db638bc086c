"""Bring the lab up and take it down (lab/status.py says how it is).

The configured lab is `gateways` classic gateways (root namespace) plus the backends and DNS, and
`fleet` fleet gateways, each in a network namespace of its own on the lab's bridge, with the package
proxy they install through (state.json keeps both counts).
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from gateway.monitoring import settings as monitoring
from lab import alert_sink, dns, machines, network, package_proxy
from lab.topology import (
    MONITORING_HOST,
    PLANNED_HOSTS,
    STATE_DIR,
    LabHost,
    backends_of,
    by_name,
    fleet_hosts,
    hosts,
)

STATE_FILE = STATE_DIR / "state.json"
MASTER_KEY_FILE = STATE_DIR / "master.key"
# The fleet's own key (its gateways share one), kept apart so that rotating it leaves gw1..N alone,
# and while a rotation rolls the key it replaces: as an operator keeps them in a secret store.
FLEET_KEY_FILE = STATE_DIR / "fleet-master.key"
FLEET_PREVIOUS_KEY_FILE = STATE_DIR / "fleet-previous-master.key"


def read_state() -> dict[str, Any]:
    try:
        state = json.loads(STATE_FILE.read_text())
    except FileNotFoundError:
        state = {"gateways": 1}
    state.setdefault("fleet", 0)
    state.setdefault("monitoring", True)
    return state


def lab_hosts() -> list[LabHost]:
    return hosts(read_state()["gateways"])


def lab_monitoring() -> bool:
    """Whether the configured lab has its monitoring host (`up --no-monitoring` leaves it out)."""
    return read_state()["monitoring"]


def lab_fleet() -> list[LabHost]:
    """The configured fleet gateways (`up --fleet N`)."""
    return fleet_hosts(read_state()["fleet"])


def built_hosts() -> list[LabHost]:
    """Every host with a file system in the lab, including the tests' and benchmarks' own."""
    directory = STATE_DIR / "hosts"
    return [by_name(p.name) for p in sorted(directory.iterdir())] if directory.exists() else []


@machines.lab_lock()
def refresh_dns() -> None:
    """Serve A and PTR records for the configured hosts, every host that was built and every host
    the tests and benchmarks may build (PLANNED_HOSTS: building one later changes no record)."""
    every = {h.name: h for h in lab_hosts() + lab_fleet() + built_hosts() + list(PLANNED_HOSTS)}
    dns.ensure(list(every.values()))


@machines.lab_lock()
def ensure_extra_host(host: LabHost, fresh: bool = False) -> None:
    """A host beyond the configured lab (tests, benchmarks), with its DNS records."""
    machines.ensure_host(host, fresh=fresh)
    refresh_dns()
    for backend in backends_of([host]):
        machines.ensure_host(backend)


@machines.lab_lock()
def ensure_fleet(count: int, fresh: bool = False) -> list[LabHost]:
    """Fleet hosts 1..count beyond the configured lab (tests): their network, the package proxy,
    DNS, the backends they serve, and the hosts themselves (fresh=True: from the clean base image)."""
    fleet = fleet_hosts(count)
    if fresh:  # fresh hosts: no rotation of the fleet's key is under way
        FLEET_PREVIOUS_KEY_FILE.unlink(missing_ok=True)
    network.ensure(fleet)
    package_proxy.ensure()
    for host in fleet:  # built first, so refresh_dns finds them
        machines.ensure_host(host, fresh=fresh)
    refresh_dns()
    for backend in backends_of(fleet):
        machines.ensure_host(backend)
    return fleet


@machines.lab_lock()
def ensure_monitoring(fresh: bool = False) -> LabHost:
    """The monitoring host and the alert sink its Alertmanager posts to. Booted again (the lab
    brought down, this machine rebooted), its Alertmanager has forgotten what it notified before:
    an alert that fired in an earlier session and never resolved would not be sent again when it
    fires anew, and a test waiting for it would wait in vain."""
    if machines.pid(MONITORING_HOST) is None:
        for kept in ("nflog", "silences"):
            (MONITORING_HOST.root / "var/lib" / monitoring.STATE_DIR / "alertmanager" / kept).unlink(missing_ok=True)
    machines.ensure_host(MONITORING_HOST, fresh=fresh)
    refresh_dns()
    alert_sink.ensure()
    return MONITORING_HOST


@machines.lab_lock()
def master_key(path: Path = MASTER_KEY_FILE) -> str:
    """The lab gateways' master key (or the fleet's, FLEET_KEY_FILE): made once, kept 0600 outside
    git, handed to the deploy."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text("sk-" + secrets.token_hex(32) + "\n")
    return path.read_text().strip()


def fleet_key() -> str:
    return master_key(FLEET_KEY_FILE)


def previous_fleet_key() -> str | None:
    """The key a rotation of the fleet's key replaces, while it rolls (None: no rotation)."""
    return FLEET_PREVIOUS_KEY_FILE.read_text().strip() if FLEET_PREVIOUS_KEY_FILE.exists() else None


@machines.lab_lock()
def up(gateways: int | None = None, fleet: int | None = None, monitoring: bool | None = None) -> list[LabHost]:
    """Idempotent: builds what is missing, boots what is stopped, leaves the rest alone."""
    state = read_state()
    if gateways is not None:
        state["gateways"] = gateways
    if fleet is not None:
        state["fleet"] = fleet
    if monitoring is not None:
        state["monitoring"] = monitoring
    fleet_gateways = fleet_hosts(state["fleet"])  # ValueError before anything is kept
    every = hosts(state["gateways"]) + fleet_gateways + (list(backends_of(fleet_gateways)) if fleet_gateways else [])
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state) + "\n")
    master_key()
    if fleet_gateways:
        network.ensure(fleet_gateways)
        package_proxy.ensure()
    refresh_dns()
    for host in every:
        machines.ensure_host(host)
    if state["monitoring"]:
        every.append(ensure_monitoring())
    return every


@machines.lab_lock()
def down(purge: bool = False) -> None:
    """Stop every built host, the DNS server and the package proxy; purge also deletes the hosts'
    file systems and the fleet's network."""
    for host in built_hosts():
        machines.remove(host) if purge else machines.stop(host)
        if host.namespace:
            machines.stop_orphans(host)
    dns.stop()
    package_proxy.stop()
    alert_sink.DAEMON.stop()
    if purge:
        network.teardown()

