"""How the lab is: which hosts run and answer, where clients, scripts and the monitoring host reach it."""
from __future__ import annotations

import urllib.parse
from typing import Any

from lab import alert_sink, control, dns, machines, package_proxy
from lab.fleet import endpoint, monitoring_urls
from lab.topology import (
    BACKENDS,
    CONTROL_ADDRESS,
    GATEWAY_PORT,
    MONITORING_HOST,
    OLLAMA_PORT,
    PACKAGE_PROXY_PORT,
    SIDE_BACKENDS,
    LabHost,
)


def report() -> dict[str, Any]:
    """What runs, where, and where the master key is (`python -m lab status [--json]`)."""
    def host_status(host: LabHost) -> dict[str, Any]:
        running = machines.pid(host) is not None
        entry: dict[str, Any] = {
            "name": host.name,
            "fqdn": host.fqdn,
            "address": host.address,
            "running": running,
            "ssh": running and machines.port_open(host.address, 22),
        }
        if host.role == "gateway":
            entry["url"] = f"http://{host.address}:{GATEWAY_PORT}/v1"
            entry["master_key_file"] = str(control.MASTER_KEY_FILE)
            entry["gateway_listening"] = running and machines.port_open(host.address, GATEWAY_PORT)
        else:
            entry["url"] = f"http://{host.address}:{OLLAMA_PORT}"
            entry["models"] = host.tags
            entry["ollama_listening"] = running and machines.port_open(host.address, OLLAMA_PORT)
        return entry

    def fleet_status(host: LabHost) -> dict[str, Any]:
        running = machines.pid(host) is not None
        return {
            "name": host.name,
            "fqdn": host.fqdn,
            "address": host.address,
            "namespace": host.namespace,
            "running": running,
            "ssh": running and machines.port_open(host.address, 22),
        }

    every = control.lab_hosts()
    built = control.built_hosts()
    # The configured fleet, and any other fleet host that runs (a test's).
    fleet = {h.name: h for h in control.lab_fleet()}
    fleet.update({h.name: h for h in built if h.namespace and machines.pid(h) is not None})
    monitoring = None
    if MONITORING_HOST in built:
        running = machines.pid(MONITORING_HOST) is not None
        urls = monitoring_urls()
        prometheus = urllib.parse.urlsplit(urls["prometheus_url"])
        monitoring = {**urls, "name": MONITORING_HOST.name, "address": MONITORING_HOST.address,
                      "running": running, "ssh": running and machines.port_open(MONITORING_HOST.address, 22),
                      "prometheus_listening": running and machines.port_open(prometheus.hostname, prometheus.port),
                      "alert_sink": {"url": alert_sink.URL, "running": alert_sink.DAEMON.pid() is not None,
                                     "received_file": str(alert_sink.RECEIVED)}}

    return {
        # Where scripts send clients: the fleet's address when there is a fleet, else gw1.
        "endpoint": endpoint(bool(fleet)),
        "dns": {"address": dns.DNS_ADDRESS, "running": dns.pid() is not None},
        "ssh_key": str(machines.SSH_KEY),
        "gateways": [host_status(h) for h in every if h.role == "gateway"],
        # A test's own backends (llm3, llm4) are shown when built; stopped, they are not a fault.
        "backends": [host_status(h) for h in BACKENDS]
                    + [{**host_status(h), "optional": True} for h in SIDE_BACKENDS if h in built],
        "fleet": [fleet_status(h) for h in sorted(fleet.values(), key=lambda h: int(h.name[5:]))],
        "package_proxy": {"address": f"{CONTROL_ADDRESS}:{PACKAGE_PROXY_PORT}",
                          "running": package_proxy.pid() is not None},
        # Where scripts find the monitoring host's Prometheus and Alertmanager (None: not built).
        "monitoring": monitoring,
    }
