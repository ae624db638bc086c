"""The fleet's network: hosts in network namespaces of their own, joined by a bridge.

Why: a floating address (keepalived VRRP) can only move between hosts that do not share one network
namespace. Layout (checked on this kind of machine):

    root ns: lab-root 127.1.0.254/16 <-veth-> p-root --+
                                    lab-br: br0 (no address)
    lab-fleetN: eth0 127.1.0.N/16 <-veth-> p-fleetN ---+

Every address stays in 127.0.0.0/8: `route_localnet=1` on both ends of each hop (only on lab-root in
the root namespace, never 'all' there). The longest prefix (127.1.0.0/16 dev eth0) beats lo's
`local 127.0.0.0/8` only while the kernel keeps the local and main tables merged, which it stops doing
for good once any `ip rule` is added: this module never adds one. Fleet hosts reach the lab's DNS and
backends (127.0.10.0/24, root namespace) through a route via lab-root. Namespaces and veths vanish on a
reboot, so `ensure` checks and rebuilds every piece each time it runs.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from lab.topology import CONTROL_ADDRESS, FLEET_PREFIX, LabHost

BRIDGE_NS = "lab-br"
BRIDGE = "br0"
ROOT_LINK = "lab-root"  # the root namespace's end
ROOT_PEER = "p-root"
HOST_LINK = "eth0"
LAB_SUBNET = "127.0.10.0/24"  # the root namespace's lab addresses: DNS, backends, classic gateways
LAB_NAMESPACE = re.compile(r"^lab-(br|fleet\d+)$")
NETNS_DIR = Path("/run/netns")


class NetworkError(RuntimeError):
    """A piece of the fleet's network could not be made."""


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    result = subprocess.run(cmd, text=True, capture_output=True)
    if check and result.returncode != 0:
        raise NetworkError(f"`{' '.join(cmd)}` exited {result.returncode}: {result.stderr.strip()}")
    return result


def _sysctl(ns: str, *settings: str) -> None:
    """Set sysctls inside a namespace (/proc/sys/net shows the namespace of whoever opens it)."""
    result = subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", *settings], text=True, capture_output=True)
    if result.returncode != 0:
        raise NetworkError(f"sysctl in {ns}: {result.stderr.strip()}")


def namespace_alive(name: str) -> bool:
    """True when /run/netns/<name> is a usable namespace (not a leftover file, not gone after a reboot)."""
    return (NETNS_DIR / name).exists() and _ip("link", "show", "lo", ns=name, check=False).returncode == 0


def lab_namespaces() -> list[str]:
    """The lab's namespaces that exist now (lab-br, lab-fleetN), whatever hosts are configured."""
    names = [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]
    return sorted(n for n in names if LAB_NAMESPACE.match(n))


def link_exists(name: str, ns: str | None = None) -> bool:
    return _ip("link", "show", "dev", name, ns=ns, check=False).returncode == 0


def ensure_namespace(name: str) -> bool:
    """Create the namespace (lo up) unless it is alive; True when it was (re)made."""
    if namespace_alive(name):
        return False
    if (NETNS_DIR / name).exists():
        _ip("netns", "del", name, check=False)
    _ip("netns", "add", name)
    _ip("link", "set", "lo", "up", ns=name)
    return True


def ensure_bridge() -> None:
    ensure_namespace(BRIDGE_NS)
    if not link_exists(BRIDGE, BRIDGE_NS):
        _ip("link", "add", BRIDGE, "type", "bridge", ns=BRIDGE_NS)
    _ip("link", "set", BRIDGE, "up", ns=BRIDGE_NS)


def _ensure_veth(outer: str, outer_ns: str | None, port: str) -> bool:
    """A veth pair `outer` (in outer_ns) <-> `port` (in the bridge, enslaved to br0); True when made.

    Deleting either end deletes both, so one end without the other is a leftover: made again.
    """
    made = False
    if not (link_exists(outer, outer_ns) and link_exists(port, BRIDGE_NS)):
        _ip("link", "del", outer, ns=outer_ns, check=False)
        _ip("link", "del", port, ns=BRIDGE_NS, check=False)
        where = ["netns", outer_ns] if outer_ns else []
        _ip("link", "add", port, "netns", BRIDGE_NS, "type", "veth", "peer", "name", outer, *where)
        made = True
    _ip("link", "set", port, "master", BRIDGE, "up", ns=BRIDGE_NS)
    return made


def ensure_root_link() -> None:
    """The control machine on the bridge: lab-root 127.1.0.254/16, route_localnet on lab-root only."""
    _ensure_veth(ROOT_LINK, None, ROOT_PEER)
    Path(f"/proc/sys/net/ipv4/conf/{ROOT_LINK}/route_localnet").write_text("1\n")
    _ip("addr", "replace", f"{CONTROL_ADDRESS}/{FLEET_PREFIX}", "dev", ROOT_LINK)
    _ip("link", "set", ROOT_LINK, "up")


def ensure_host_network(host: LabHost) -> None:
    """The host's namespace: eth0 with its address, lo up, route_localnet, the route to the lab's DNS/backends."""
    ns = host.namespace
    if not ns:
        raise NetworkError(f"{host.name} has no network namespace of its own")
    ensure_namespace(ns)
    _ensure_veth(HOST_LINK, ns, f"p-{host.name}")
    _sysctl(ns, "net.ipv4.conf.all.route_localnet=1", f"net.ipv4.conf.{HOST_LINK}.route_localnet=1")
    _ip("addr", "replace", f"{host.address}/{FLEET_PREFIX}", "dev", HOST_LINK, ns=ns)
    _ip("link", "set", HOST_LINK, "up", ns=ns)
    _ip("link", "set", "lo", "up", ns=ns)
    # `src` is required: 127/8 addresses get scope host, which the kernel never picks as the source
    # for a route through a gateway (seen: SYNs left with source 0.0.0.0, dropped as martians).
    _ip("route", "replace", LAB_SUBNET, "via", CONTROL_ADDRESS, "dev", HOST_LINK, "src", host.address, ns=ns)


def ensure(hosts: list[LabHost]) -> None:
    """Idempotent: the bridge, the root namespace's end, and a namespace for each host that has one."""
    ensure_bridge()
    ensure_root_link()
    for host in hosts:
        if host.namespace:
            ensure_host_network(host)


def ready(hosts: list[LabHost]) -> bool:
    """Whether the network these hosts need is there (e.g. False after a reboot)."""
    names = [BRIDGE_NS] + [h.namespace for h in hosts if h.namespace]
    return link_exists(ROOT_LINK) and all(namespace_alive(n) for n in names)


def teardown() -> None:
    """Remove the root namespace's veth and every lab namespace (stop the hosts in them first)."""
    _ip("link", "del", ROOT_LINK, check=False)
    for name in lab_namespaces():
        _ip("netns", "del", name, check=False)
