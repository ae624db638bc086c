"""Read a pyinfra inventory file the way `pyinfra INVENTORY deploy.py` does, without deploying.

The checks and the operator tasks use it, so every tool works from the one inventory.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pyinfra.api.state import State
from pyinfra.context import ctx_state
from pyinfra_cli.inventory import make_inventory

REPO = Path(__file__).resolve().parent.parent


def host_data(inventory: str) -> dict[str, dict[str, Any]]:
    """Host name -> merged data (host over group over inventory-wide) for every inventory host.

    The inventory's own checks (gateway_group) run while it loads: a SystemExit carries their
    message, exactly as with pyinfra.
    """
    path = str(Path(inventory).resolve())
    cwd = os.getcwd()
    os.chdir(REPO)  # inventories import the project's packages, as under pyinfra run from here
    try:
        with ctx_state.use(State()):
            loaded = make_inventory(path, cwd=str(REPO))
            return {host.name: host.data.dict() for host in loaded}
    finally:
        os.chdir(cwd)
