"""Bring the lab up, take it down, and say how it is."""
from __future__ import annotations

import json
import secrets
from typing import Any

from lab import dns, machines
from lab.topology import BACKENDS, GATEWAY_PORT, OLLAMA_PORT, STATE_DIR, LabHost, by_name, hosts

STATE_FILE = STATE_DIR / "state.json"
MASTER_KEY_FILE = STATE_DIR / "master.key"


def read_state() -> dict[str, Any]:
    try:
        return json.loads(STATE_FILE.read_text())
    except FileNotFoundError:
        return {"gateways": 1}


def lab_hosts() -> list[LabHost]:
    return hosts(read_state()["gateways"])


def built_hosts() -> list[LabHost]:
    """Every host with a file system in the lab, including the tests' and benchmarks' own."""
    directory = STATE_DIR / "hosts"
    return [by_name(p.name) for p in sorted(directory.iterdir())] if directory.exists() else []


def refresh_dns() -> None:
    """Serve A and PTR records for the configured hosts and every other host that was built."""
    every = {h.name: h for h in lab_hosts() + built_hosts()}
    dns.ensure(list(every.values()))


def ensure_extra_host(host: LabHost, fresh: bool = False) -> None:
    """A host beyond the configured lab (tests, benchmarks), with its DNS records."""
    machines.ensure_host(host, fresh=fresh)
    refresh_dns()


def master_key() -> str:
    """The lab fleet's master key: made once, kept 0600 outside git, handed to the deploy."""
    if not MASTER_KEY_FILE.exists():
        MASTER_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
        MASTER_KEY_FILE.touch(mode=0o600)
        MASTER_KEY_FILE.write_text("sk-" + secrets.token_hex(32) + "\n")
    return MASTER_KEY_FILE.read_text().strip()


def up(gateways: int | None = None) -> list[LabHost]:
    """Idempotent: builds what is missing, boots what is stopped, leaves the rest alone."""
    state = read_state()
    if gateways is not None:
        state["gateways"] = gateways
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    STATE_FILE.write_text(json.dumps(state) + "\n")
    master_key()
    every = hosts(state["gateways"])
    refresh_dns()
    for host in every:
        machines.ensure_host(host)
    return every


def down(purge: bool = False) -> None:
    for host in built_hosts():
        machines.remove(host) if purge else machines.stop(host)
    dns.stop()


def status() -> dict[str, Any]:
    def host_status(host: LabHost) -> dict[str, Any]:
        running = machines.pid(host) is not None
        entry: dict[str, Any] = {
            "name": host.name,
            "fqdn": host.fqdn,
            "address": host.address,
            "running": running,
            "ssh": running and machines.port_open(host.address, 22),
        }
        if host.role == "gateway":
            entry["url"] = f"http://{host.address}:{GATEWAY_PORT}/v1"
            entry["master_key_file"] = str(MASTER_KEY_FILE)
            entry["gateway_listening"] = running and machines.port_open(host.address, GATEWAY_PORT)
        else:
            entry["url"] = f"http://{host.address}:{OLLAMA_PORT}"
            entry["models"] = host.tags
            entry["ollama_listening"] = running and machines.port_open(host.address, OLLAMA_PORT)
        return entry

    every = lab_hosts()
    return {
        "dns": {"address": dns.DNS_ADDRESS, "running": dns.pid() is not None},
        "ssh_key": str(machines.SSH_KEY),
        "gateways": [host_status(h) for h in every if h.role == "gateway"],
        "backends": [host_status(h) for h in BACKENDS],
    }
