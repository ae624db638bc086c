"""Read a pyinfra inventory file as `pyinfra INVENTORY deploy.py` reads it, without pyinfra's CLI.

The checks and the operator tasks use it, so every tool works from the one inventory. (pyinfra's
own loader lives in pyinfra_cli, whose import monkey-patches threads and sockets with gevent and
hangs Fabric; inventories here use the plain forms below, which this reads the same way.)

Forms: a module-level list or tuple is a group; a group may be `(hosts, group_data)`; a host is a
name or `(name, host_data)`. Host data overrides group data.
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _hosts_and_data(value: Any) -> tuple[list, dict] | None:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list) and isinstance(value[1], dict):
        return value[0], value[1]
    if isinstance(value, (list, tuple)) and all(isinstance(h, (str, tuple)) for h in value):
        return list(value), {}
    return None


def host_data(inventory: str) -> dict[str, dict[str, Any]]:
    """Host name -> merged data (host over group) for every inventory host, in file order.

    The inventory's own checks (gateway_group) run while it loads: a SystemExit carries their
    message, exactly as with pyinfra.
    """
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # inventories import the project's packages
    namespace = runpy.run_path(str(Path(inventory).resolve()))
    hosts: dict[str, dict[str, Any]] = {}
    for name, value in namespace.items():
        if name.startswith("_"):
            continue
        group = _hosts_and_data(value)
        if group is None:
            continue
        members, group_data = group
        for member in members:
            host, own = member if isinstance(member, tuple) else (member, {})
            hosts[host] = {**hosts.get(host, {}), **group_data, **own}
    return hosts
