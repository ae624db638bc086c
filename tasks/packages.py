"""OS packages the gateway needs: an interpreter able to create virtualenvs, and CA certificates."""
from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt

PACKAGES = ["python3", "python3-venv", "python3-pip", "ca-certificates"]

installed = host.get_fact(DebPackages)
missing = [name for name in PACKAGES if name not in installed]

if missing:
    # Refresh the package lists only when something is to be installed: a run with nothing
    # missing must change nothing.
    apt.update(name=f"APT package lists are fresh (to install {', '.join(missing)})")

apt.packages(
    name=f"Packages {', '.join(PACKAGES)} are installed",
    packages=PACKAGES,
    no_recommends=True,
)
