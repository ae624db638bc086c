"""The lab's fleet as gateway settings: the data the lab inventory and the tests deploy with."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.inventory import gateway_group, monitoring_group
from gateway.monitoring.settings import load_monitoring
from lab import control
from lab.machines import KNOWN_HOSTS, SSH_KEY
from lab.topology import (
    BACKENDS,
    DNS_ADDRESS,
    DOMAIN,
    FLEET_NAME,
    FLEET_PREFIX,
    FLEET_VIP,
    GATEWAY_PORT,
    MODELS,
    MONITORING_HOST,
    OLLAMA_PORT,
    STATE_DIR,
    LabHost,
    backends_of,
    gateway,
)

TEAM_KEYS_FILE = STATE_DIR / "team-keys.json"  # outside git, 0600, as an operator's would be
METRICS_TOKEN_FILE = STATE_DIR / "metrics.token"  # the lab's scrape token, made by the first deploy
MONITORING_PASSWORD_FILE = STATE_DIR / "monitoring.password"  # the lab's login to mon1, made by its first deploy


def ssh_data() -> dict[str, Any]:
    """How pyinfra and fab reach every lab host."""
    return {
        "ssh_user": "root",
        "ssh_key": str(SSH_KEY),
        # Host keys are checked, by pyinfra and fab alike, against the keys the lab recorded.
        "ssh_known_hosts_file": str(KNOWN_HOSTS),
        "ssh_strict_host_key_checking": "yes",
    }


def fleet_data(backends: Sequence[LabHost] = BACKENDS, **overrides: Any) -> dict[str, Any]:
    """Group data for lab gateways: the lab's models, these backends, its master key, SSH access."""
    data: dict[str, Any] = {
        "litellm_models": {name: dict(spec) for name, spec in MODELS.items()},
        "litellm_backends": {
            b.name: {"address": b.fqdn, "port": OLLAMA_PORT, "models": list(b.models)} for b in backends
        },
        "litellm_master_key": control.master_key(),
        "litellm_port": GATEWAY_PORT,
        "litellm_dns_nameservers": [DNS_ADDRESS],
        "litellm_team_keys_file": str(TEAM_KEYS_FILE),
        "litellm_metrics_token_file": str(METRICS_TOKEN_FILE),
        **ssh_data(),
    }
    data.update(overrides)
    return data


FLEET_CA_DIR = STATE_DIR / "fleet-ca"  # the lab fleet's own CA (outside git): clients get its ca.crt
# One uvicorn worker per fleet gateway: the three share this machine's CPUs ("auto" would run six
# workers on two cores, beside the other test process' gateways).
FLEET_SETTINGS = {"litellm_fleet_address": f"{FLEET_VIP}/{FLEET_PREFIX}",
                  "litellm_fleet_name": f"{FLEET_NAME}.{DOMAIN}",
                  "litellm_tls": "own-ca", "litellm_tls_ca_dir": str(FLEET_CA_DIR), "litellm_workers": 1}


def fleet_settings() -> dict[str, Any]:
    """FLEET_SETTINGS and the fleet's own master key (with the one it replaces while a rotation rolls)."""
    previous = control.previous_fleet_key()
    return {**FLEET_SETTINGS, "litellm_master_key": control.fleet_key(),
            **({"litellm_previous_master_key": previous} if previous else {})}


def host_entry(host: LabHost) -> tuple[str, dict[str, Any]]:
    """A gateway by its DNS name, reached at its loopback address, serving on that address only."""
    entry = {"ssh_hostname": host.address, "litellm_bind_address": host.address}
    if not host.namespace:
        # These hosts share one network namespace: 127.0.0.1 would be every host's.
        entry["litellm_instance_address"] = host.address
    return host.fqdn, entry


def lab_gateways(hosts: list[LabHost] | None = None, **overrides: Any) -> tuple[list, dict[str, Any]]:
    """Lab gateways as an inventory group; hosts with network namespaces of their own form a fleet
    at the lab's floating address."""
    hosts = hosts if hosts is not None else [h for h in control.lab_hosts() if h.role == "gateway"]
    fleet = fleet_settings() if hosts and all(h.namespace for h in hosts) else {}
    return gateway_group([host_entry(h) for h in hosts], fleet_data(backends_of(hosts), **{**fleet, **overrides}))


def lab_monitoring(**overrides: Any) -> tuple[list, dict[str, Any]]:
    """The lab's monitoring host as an inventory group: its services on its own address, its alerts
    to the lab's alert sink."""
    from lab import alert_sink

    host = MONITORING_HOST
    data = {"monitoring_bind_address": host.address, "monitoring_receiver": {"webhook_url": alert_sink.URL},
            "monitoring_password_file": str(MONITORING_PASSWORD_FILE), **ssh_data(), **overrides}
    return monitoring_group([(host.fqdn, {"ssh_hostname": host.address})], data)


def monitoring_urls(**overrides: Any) -> dict[str, str]:
    """Where scripts reach the lab's Prometheus and Alertmanager (`lab status --json`), under these settings."""
    hosts, data = lab_monitoring(**overrides)
    name, own = hosts[0]
    return load_monitoring({**data, **own}).urls(name)


def endpoint(fleet: bool) -> dict[str, Any]:
    """Where clients reach the lab: the fleet's address over HTTPS (and the CA to verify it with),
    or gw1 over plain HTTP."""
    if fleet:
        return {"url": f"https://{FLEET_VIP}:{GATEWAY_PORT}/v1", "ca_file": str(FLEET_CA_DIR / "ca.crt"),
                "master_key_file": str(control.FLEET_KEY_FILE)}
    return {"url": f"http://{gateway(1).address}:{GATEWAY_PORT}/v1", "ca_file": None,
            "master_key_file": str(control.MASTER_KEY_FILE)}


def write_inventory(path: Path, hosts: Sequence[LabHost], monitoring: dict[str, Any] | None = None,
                    **overrides: Any) -> Path:
    """An inventory file for `pyinfra`, `fab` or `python -m checks`: these lab gateways, these overrides;
    with `monitoring` (its settings' overrides), the lab's monitoring host too."""
    text = ("from lab.fleet import lab_gateways, lab_monitoring\nfrom lab.topology import by_name\n"
            f"gateways = lab_gateways([by_name(n) for n in {[h.name for h in hosts]!r}], **{overrides!r})\n")
    if monitoring is not None:
        text += f"monitoring = lab_monitoring(**{monitoring!r})\n"
    path.write_text(text)
    return path
