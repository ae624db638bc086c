"""Inventory helper: a pyinfra group of gateway hosts whose settings are checked on load.

Checking here, while pyinfra loads the inventory, means bad settings stop the run before it
connects to any host.
"""
from __future__ import annotations

from typing import Any, Sequence

from gateway.settings import SettingsError, host_problems, load, shown


def gateway_group(hosts: Sequence[Any], data: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """(hosts, group data) for pyinfra; hosts are names or (name, host data) pairs."""
    for host in hosts:
        name, host_data = host if isinstance(host, tuple) else (host, {})
        merged = {**data, **host_data}
        problems = host_problems(name, merged)
        try:
            load(merged)
        except SettingsError as error:
            problems += error.problems
        if problems:
            raise SystemExit(f"inventory: gateway {shown(name)}: {SettingsError(problems)}\nNothing was changed on any host.")
    return list(hosts), data
