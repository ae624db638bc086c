"""OS packages of each host's roles, in one install: for a gateway an interpreter able to create
virtualenvs, CA certificates, Redis, HAProxy (the front), logrotate, and for a fleet's address
keepalived and nftables (its handover, on_host/handover.py); the node exporter on every host once
the inventory has a monitoring host; Prometheus, Alertmanager and the blackbox exporter on a
monitoring host."""
from pyinfra import host, state
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files

from gateway.inventory import is_gateway, is_monitoring, monitored
from gateway.monitoring import settings as monitoring
from gateway.settings import for_host

data = host.data.dict()
PACKAGES = []
if is_gateway(data):
    PACKAGES += ["python3", "python3-venv", "python3-pip", "ca-certificates", "redis-server", "haproxy", "logrotate",
                 *(["keepalived", "redis-sentinel", "nftables"] if for_host(host).fleet else [])]
if monitored(h.data.dict() for h in state.inventory):
    PACKAGES += list(monitoring.NODE_PACKAGE)
if is_monitoring(data):
    PACKAGES += list(monitoring.PACKAGES)
# Debian's own service of a package we run under a unit of our own: masked before the package
# arrives, so its default instance (on every address, with its own config) never starts. One
# installed before us may serve something else and is left alone.
OWN_INSTANCE_INSTEAD = {
    "redis-server": "no default Redis on TCP (the gateway's own is litellm-redis.service, a Unix socket only)",
    "haproxy": "no default HAProxy (the gateway's front is litellm-front.service)",
    "keepalived": "no default keepalived (the fleet's address is litellm-fleet.service)",
    "redis-sentinel": "no default Sentinel (the fleet's is litellm-sentinel.service)",
    **{package: f"no default {package} (ours is {unit})"
       for package, unit in {**monitoring.NODE_PACKAGE, **monitoring.PACKAGES}.items()},
}

installed = host.get_fact(DebPackages)
missing = [name for name in PACKAGES if name not in installed]

for package, why in OWN_INSTANCE_INSTEAD.items():
    if package in missing:
        files.link(
            name=f"{package}.service is masked before installing: {why}",
            path=f"/etc/systemd/system/{package}.service",
            target="/dev/null",
        )

if missing:
    # Refresh the package lists only when something is to be installed: a run with nothing
    # missing must change nothing.
    apt.update(name=f"APT package lists are fresh (to install {', '.join(missing)})")

apt.packages(
    name=f"Packages {', '.join(PACKAGES)} are installed",
    packages=PACKAGES,
    no_recommends=True,
)
