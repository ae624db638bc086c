"""Preflight: refuse, before any host is changed, a fleet the gateway cannot work in.

Settings, DNS (A/AAAA, PTR, forward-confirmed) and backends (reachable, Ollama, models pulled) are
checked once per run for the whole inventory; then each host's OS. Any failure raises while
pyinfra is still preparing, so no operation runs on any host.
"""
from pyinfra import host, logger, state
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.server import LinuxDistribution

from gateway.facts import InterfaceAddresses
from gateway.preflight import run_for_data
from gateway.settings import for_host

SUPPORTED = {"Debian": ("12", "13"), "Ubuntu": ("22.04", "24.04")}

report = getattr(state, "litellm_preflight", None)
if report is None:
    report = run_for_data({h.name: h.data.dict() for h in state.inventory})
    state.litellm_preflight = report
    for name in sorted(report.skipped):
        logger.warning(f"!!! PREFLIGHT {name.upper()} CHECKS SKIPPED (litellm_preflight_skip): "
                       "their failures will not be seen")
    logger.info("--> Preflight:\n" + report.table())
if not report.ok:
    raise PyinfraError(f"preflight failed (exit status {report.exit_code}); see the table above. "
                       "Nothing was changed on any host.")

distro = host.get_fact(LinuxDistribution)
release = str(distro.get("release_meta", {}).get("VERSION_ID", distro.get("major", "")))
if release not in SUPPORTED.get(distro.get("name") or "", ()):
    supported = "; ".join(f"{name} {', '.join(versions)}" for name, versions in SUPPORTED.items())
    raise PyinfraError(
        f"{host.name}: {distro.get('name')} {release} is not supported (supported: {supported}). "
        "Nothing was changed on any host."
    )

fleet = for_host(host).fleet
if fleet:
    interfaces = host.get_fact(InterfaceAddresses)
    own = fleet.address_of(host.name) if host.name in dict(fleet.members) else None
    if own not in interfaces.get(fleet.interface, []):
        holding = [name for name, addresses in interfaces.items() if own in addresses]
        raise PyinfraError(
            f"{host.name}: litellm_fleet_interface {fleet.interface!r} does not hold this gateway's address {own} "
            f"(it is on {', '.join(holding) or 'no interface'}; interfaces: {', '.join(sorted(interfaces))}); set "
            "litellm_fleet_interface to the interface the fleet's address belongs on. Nothing was changed on any host."
        )
