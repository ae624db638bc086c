"""The lab's real DNS server: dnsmasq on its own loopback address.

It is authoritative for the lab domain and its reverse zone (A and PTR for every lab host), and
forwards every other name to this machine's own resolvers, so lab hosts can still reach the
package registries. Tests add records of their own (a missing PTR, a PTR naming another host, ...)
through `extra` lines in dnsmasq's syntax.

Fleet hosts (127.1.0.0/16, namespaces of their own) query it too: their packets arrive through the
lab-root veth, and dnsmasq, bound to the address itself (`bind-interfaces`), answers whatever
interface a query comes in on. The fleet's floating address has a name of its own.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from lab.machines import LabError, ensure_address, port_open
from lab.topology import DNS_ADDRESS, DOMAIN, FLEET_NAME, FLEET_VIP, STATE_DIR, LabHost

CONF = STATE_DIR / "dns" / "dnsmasq.conf"
DEAD_NAMESERVER = "127.0.10.54"  # an unused loopback address: nothing answers there
# The preflight tests' cases, one record set each (address= gives A only; host-record= A and PTR).
# Served always, so that no test restarts the server while another one sends traffic.
PREFLIGHT_RECORDS = (
    "address=/noptr.lab.test/127.0.10.61",
    "host-record=real.lab.test,127.0.10.62",
    "address=/alias.lab.test/127.0.10.62",
    "address=/fwd.lab.test/127.0.10.63",
    "ptr-record=63.10.0.127.in-addr.arpa,moved.lab.test",
    "address=/moved.lab.test/127.0.10.64",
    f"server=/broken.lab.test/{DEAD_NAMESERVER}",
)
PID_FILE = STATE_DIR / "dns" / "dnsmasq.pid"
LOG = STATE_DIR / "dns" / "dnsmasq.log"


def upstream_servers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    servers = []
    for line in resolv_conf.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and parts[1] != DNS_ADDRESS:
            servers.append(parts[1])
    return servers


def render_conf(hosts: list[LabHost], extra: list[str] = ()) -> str:
    lines = [
        "# Written by `python -m lab`; edits are overwritten.",
        "port=53",
        f"listen-address={DNS_ADDRESS}",
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        f"local=/{DOMAIN}/",
        "local=/10.0.127.in-addr.arpa/",
        "local=/1.127.in-addr.arpa/",  # the fleet's 127.1.0.0/16
        f"pid-file={PID_FILE}",
        f"log-facility={LOG}",
    ]
    lines += [f"server={server}" for server in upstream_servers()]
    lines += [f"host-record={host.fqdn},{host.address}" for host in hosts]
    lines.append(f"host-record={FLEET_NAME}.{DOMAIN},{FLEET_VIP}")
    lines += [*PREFLIGHT_RECORDS, *extra]
    return "\n".join(lines) + "\n"


def pid() -> int | None:
    """PID of the running dnsmasq: a live one, not a zombie nor a PID reused after a reboot."""
    try:
        value = int(PID_FILE.read_text())
        stat = Path(f"/proc/{value}/stat").read_text()
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    name, _, rest = stat.partition("(")[2].rpartition(")")
    return value if name == "dnsmasq" and rest.split()[0] != "Z" else None


def stop() -> None:
    value = pid()
    if value is not None:
        os.kill(value, signal.SIGTERM)
        for _ in range(50):
            if pid() is None:
                break
            time.sleep(0.1)
    PID_FILE.unlink(missing_ok=True)


def ensure(hosts: list[LabHost], extra: list[str] = ()) -> None:
    """Serve exactly these records; restart dnsmasq only when its configuration changed."""
    CONF.parent.mkdir(parents=True, exist_ok=True)
    text = render_conf(hosts, extra)
    changed = not CONF.exists() or CONF.read_text() != text
    if changed:
        CONF.write_text(text)
    if pid() is not None and not changed and port_open(DNS_ADDRESS, 53):
        return
    stop()
    ensure_address(DNS_ADDRESS)
    result = subprocess.run(["dnsmasq", f"--conf-file={CONF}"], text=True, capture_output=True)
    if result.returncode != 0:
        raise LabError(f"dnsmasq did not start: {result.stderr.strip()}")
    for _ in range(50):
        if port_open(DNS_ADDRESS, 53):
            return
        time.sleep(0.1)
    raise LabError(f"dnsmasq is not answering on {DNS_ADDRESS}:53 (log: {LOG})")
