"""What `fab status` needs from one gateway host, gathered on the host in one go, as JSON.

`python3 -m on_host.status --url URL --layout JSON`, run by `fab status` over SSH (the layout of the
front and instances comes from gateway/services/registry.py). It reads nothing secret. (The managed files'
fingerprints come from the deploy's own ManagedFiles fact, not from here.)
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import socket
import subprocess
import sys
from urllib.parse import urlsplit

from . import front, shared_limits
from .handover import holds
from .readiness import pin_argument, probe, trust_pinned
from .switch import serving, target


def systemd(unit: str) -> dict[str, str]:
    props = "ActiveState,SubState,ActiveEnterTimestamp,NRestarts,MainPID"
    output = subprocess.run(["systemctl", "show", unit, "-p", props], capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def _status_fields(pid: str) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            return dict(line.split(":", 1) for line in handle if ":" in line)
    except OSError:
        return {}


def rss_kib(pid: str) -> int | None:
    """Resident memory of the main process and its children (the proxy's workers), in KiB."""
    main = _status_fields(pid)
    if "VmRSS" not in main:
        return None
    total = int(main["VmRSS"].split()[0])
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _status_fields(entry)
            if fields.get("PPid", "").strip() == pid and "VmRSS" in fields:
                total += int(fields["VmRSS"].split()[0])
    return total


def lock_digest(venv: str) -> str | None:
    """SHA-256 of the lock the virtualenv was installed from (written after pip succeeded)."""
    try:
        with open(os.path.join(venv, "requirements.txt"), "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def litellm_version(venv: str) -> str | None:
    found = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "litellm-*.dist-info"))
    return os.path.basename(found[0])[len("litellm-"):-len(".dist-info")] if found else None


def fleet_view(layout: dict, own_address: str) -> dict | None:
    """This gateway's view of the fleet: keepalived's unit, whether it holds the address, each
    gateway's state in this front's backend of gateways (UP, DRAIN, DOWN, MAINT) with its requests,
    and the rate-limit store: this gateway's Redis and what its sentinel says of the primary."""
    fleet = layout.get("fleet")
    if not fleet:
        return None
    try:
        rows = front.servers(layout["admin_socket"], fleet["backend"])
        gateways = {name: {"status": row["status"], "in_flight": front.in_flight(row)} for name, row in rows.items()}
    except front.FrontError:
        gateways = {}
    try:
        password = shared_limits.read_variable(fleet["env_file"], fleet["password_variable"])
        redis = shared_limits.view(own_address, fleet["redis_port"], fleet["sentinel_port"], password,
                                    fleet.get("redis_ca"))
    except (OSError, SystemExit) as error:
        redis = {"error": f"no password to ask Redis with: {error}"}
    return {"unit": systemd(fleet["unit"]).get("ActiveState"), "holder": holds(fleet["address"]),
            "gateways": gateways, "redis": redis}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--layout", required=True)
    pin_argument(parser)
    args = parser.parse_args(argv)
    trust_pinned(args.tls_pin)
    layout = json.loads(args.layout)
    instances = layout["instances"]
    port = serving(instances) or next(iter(instances))
    unit = systemd(instances[port]["unit"])
    release = target(instances[port]["slot"]) or ""
    previous = target(next(i["slot"] for p, i in instances.items() if p != port))  # what `fab rollback` goes to
    try:
        servers = {name: row["status"]
                   for name, row in front.servers(layout["admin_socket"], layout["backend"]).items()}
    except front.FrontError:
        servers = {}
    address = urlsplit(args.url)
    try:
        with socket.create_connection((address.hostname, address.port), timeout=2):
            listening = True
    except OSError:
        listening = False
    _, readiness = probe(args.url, timeout=5)
    pid = unit.get("MainPID", "0")
    json.dump(
        {
            "active": unit.get("ActiveState"),
            "sub": unit.get("SubState"),
            "since": unit.get("ActiveEnterTimestamp"),
            "restarts": unit.get("NRestarts"),
            "pid": pid,
            "rss_kib": rss_kib(pid) if pid != "0" else None,
            "listening": listening,
            "readiness": readiness,
            "instance": instances[port]["unit"],
            "release": os.path.basename(release) or None,
            "previous": os.path.basename(previous) if previous and previous != release else None,
            "front": systemd(layout["front_unit"]).get("ActiveState"),
            "front_server": servers.get(instances[port]["server"]),
            "front_servers": servers,
            "version": litellm_version(release) if release else None,
            "lock": lock_digest(release) if release else None,
            "cpus": os.cpu_count() or 1,  # what the deploy's "auto" workers were resolved with
            "services": {name: systemd(name).get("ActiveState") for name in layout["services"]},
            "fleet": fleet_view(layout, address.hostname or ""),
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
