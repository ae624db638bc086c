"""Preflight: refuse, before any host is changed, settings or systems the gateway cannot run on."""
from pyinfra import host
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.server import LinuxDistribution

from gateway.settings import SettingsError, for_host

SUPPORTED = {"Debian": ("12", "13"), "Ubuntu": ("22.04", "24.04")}

try:
    for_host(host)
except SettingsError as error:
    raise PyinfraError(f"{host.name}: {error}\nNothing was changed on any host.") from None

distro = host.get_fact(LinuxDistribution)
release = str(distro.get("release_meta", {}).get("VERSION_ID", distro.get("major", "")))
if release not in SUPPORTED.get(distro.get("name") or "", ()):
    supported = "; ".join(f"{name} {', '.join(versions)}" for name, versions in SUPPORTED.items())
    raise PyinfraError(
        f"{host.name}: {distro.get('name')} {release} is not supported (supported: {supported}). "
        "Nothing was changed on any host."
    )
