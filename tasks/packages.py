"""OS packages the gateway needs: an interpreter able to create virtualenvs, CA certificates, Redis, logrotate."""
from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files

PACKAGES = ["python3", "python3-venv", "python3-pip", "ca-certificates", "redis-server", "logrotate"]

installed = host.get_fact(DebPackages)
missing = [name for name in PACKAGES if name not in installed]

if "redis-server" in missing:
    # The gateway runs its own Redis (litellm-redis.service, Unix socket only). Masked before the
    # package arrives, Debian's default instance never starts: no Redis listens on TCP 6379. A
    # redis-server installed before us may serve something else and is left alone.
    files.link(
        name="redis-server.service is masked before installing: no default Redis on TCP",
        path="/etc/systemd/system/redis-server.service",
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
