"""OS packages the gateway needs: an interpreter able to create virtualenvs, CA certificates, Redis,
HAProxy (the front), logrotate; keepalived for a fleet's address."""
from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files

from gateway.settings import for_host

PACKAGES = ["python3", "python3-venv", "python3-pip", "ca-certificates", "redis-server", "haproxy",
            "logrotate", *(["keepalived", "redis-sentinel"] if for_host(host).fleet else [])]
# Debian's own service of a package we run under a unit of our own: masked before the package
# arrives, so its default instance never starts. One installed before us may serve something else
# and is left alone.
OWN_INSTANCE_INSTEAD = {
    "redis-server": "no default Redis on TCP (the gateway's own is litellm-redis.service, a Unix socket only)",
    "haproxy": "no default HAProxy (the gateway's front is litellm-front.service)",
    "keepalived": "no default keepalived (the fleet's address is litellm-fleet.service)",
    "redis-sentinel": "no default Sentinel (the fleet's is litellm-sentinel.service)",
}

installed = host.get_fact(DebPackages)
missing = [name for name in PACKAGES if name not in installed]

for package, why in OWN_INSTANCE_INSTEAD.items():
    if package in missing and package in PACKAGES:
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
