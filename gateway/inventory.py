"""Inventory helper: a pyinfra group of gateway hosts whose settings are checked on load.

Checking here, while pyinfra loads the inventory, means bad settings stop the run before it
connects to any host.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gateway.monitoring.settings import load_monitoring
from gateway.settings import SettingsError, host_problems, load, shown


def is_gateway(data: Mapping[str, Any]) -> bool:
    """A gateway host: one with gateway settings (gateway_group's hosts; models are required there)."""
    return "litellm_models" in data or "litellm_backends" in data


def is_monitoring(data: Mapping[str, Any]) -> bool:
    """A monitoring host: one with monitoring settings (monitoring_group's hosts; a receiver is required there)."""
    return "monitoring_receiver" in data


def _entries(hosts: Sequence[Any]) -> list[tuple[Any, dict[str, Any]]]:
    return [host if isinstance(host, tuple) else (host, {}) for host in hosts]


def with_fleet_members(hosts: Sequence[Any], data: dict[str, Any]) -> dict[str, Any]:
    """The group data with litellm_fleet_members listing the group's own gateways, when it is a fleet.

    Declared by the group itself: every gateway of a fleet is a peer of the others, so the list is
    the group's hosts and their addresses, never a second list to keep in step.
    """
    if data.get("litellm_fleet_address") is None or "litellm_fleet_members" in data:
        return data
    members = [[name, {**data, **own}.get("litellm_bind_address", "0.0.0.0")] for name, own in _entries(hosts)]
    return {**data, "litellm_fleet_members": members}


def _checked(kind: str, hosts: Sequence[Any], data: dict[str, Any], load_settings: Callable[[dict], Any]) -> None:
    """Each host's SSH settings and `load_settings` of its merged data; SystemExit naming the host otherwise."""
    for name, host_data in _entries(hosts):
        merged = {**data, **host_data}
        problems = host_problems(name, merged)
        try:
            load_settings(merged)
        except SettingsError as error:
            problems += error.problems
        if problems:
            raise SystemExit(f"inventory: {kind} {shown(name)}: {SettingsError(problems)}\n"
                             "Nothing was changed on any host.")


def gateway_group(hosts: Sequence[Any], data: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """(hosts, group data) for pyinfra; hosts are names or (name, host data) pairs."""
    data = with_fleet_members(hosts, data)
    _checked("gateway", hosts, data, load)
    return list(hosts), data


def monitoring_group(hosts: Sequence[Any], data: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """(hosts, group data) for pyinfra: the hosts running Prometheus, Alertmanager and the blackbox
    exporter for every gateway of the inventory (a monitoring host may also be a gateway)."""
    data = {"monitoring_receiver": None, **data}
    _checked("monitoring host", hosts, data, load_monitoring)
    return list(hosts), data


def monitored(hosts_data: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the inventory (every host's data) has a monitoring host: then every host runs a node exporter."""
    return any(is_monitoring(data) for data in hosts_data)
