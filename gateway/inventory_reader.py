"""Read a pyinfra inventory as `pyinfra INVENTORY deploy.py` reads it, without pyinfra's CLI.

The checks and the operator tasks use it, so every tool sees the settings the deploy sees. (pyinfra's
own loader lives in pyinfra_cli, whose import monkey-patches threads and sockets with gevent and
hangs Fabric; inventories here use the plain forms below, which this reads the same way.)

Forms: a module-level list or tuple is a group; a group may be `(hosts, group_data)`; a host is a
name or `(name, host_data)`. As pyinfra merges them, lowest first: the `all` group's data and
group_data/all.py; each group's data (inventory order, the group named after the inventory file
last), each updated by group_data/GROUP.py; the host's own data. group_data/ is read in the working
directory and beside the inventory (the latter over the former). pyinfra's command-line `--data`
is not seen here: keep settings in the inventory or group_data/.
"""
from __future__ import annotations

import ast
import runpy
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _hosts_and_data(value: Any) -> tuple[list, dict] | None:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list) and isinstance(value[1], dict):
        return value[0], value[1]
    if isinstance(value, (list, tuple)) and all(isinstance(h, (str, tuple)) for h in value):
        return list(value), {}
    return None


def _imported_names(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def _group_data_file(path: Path) -> dict[str, Any]:
    """A group_data file's settings, as pyinfra keeps them: `__all__` if it has one, else every name
    it defines that is not imported and does not start with `__`."""
    attrs = runpy.run_path(str(path))
    keys = attrs["__all__"] if "__all__" in attrs else [k for k in attrs if k not in _imported_names(path.read_text())]
    return {key: attrs[key] for key in keys if not key.startswith("__")}


def group_data_files(inventory: Path, cwd: Path) -> dict[str, dict[str, Any]]:
    """Group name -> data from group_data/NAME.py in the working directory, then beside the inventory."""
    folders = [cwd / "group_data"]
    if inventory.parent.resolve() != cwd.resolve():
        folders.append(inventory.parent / "group_data")
    found: dict[str, dict[str, Any]] = defaultdict(dict)
    for folder in folders:
        for path in sorted(folder.glob("*.py")) if folder.is_dir() else ():
            found[path.stem].update(_group_data_file(path))
    return found


def host_data(inventory: str, cwd: str | None = None) -> dict[str, dict[str, Any]]:
    """Host name -> merged data for every inventory host, in file order, as pyinfra merges it.

    The inventory's own checks (gateway_group) run while it loads: a SystemExit carries their
    message, exactly as with pyinfra.
    """
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # inventories import the project's packages
    path = Path(inventory).resolve()
    namespace = runpy.run_path(str(path))
    groups: dict[str, tuple[list[str], dict[str, Any]]] = {}
    own: dict[str, dict[str, Any]] = {}
    for name, value in namespace.items():
        group = None if name.startswith("_") else _hosts_and_data(value)
        if group is None:
            continue
        members, data = group
        names = []
        for member in members:
            host, mine = member if isinstance(member, tuple) else (member, {})
            own.setdefault(host, {}).update(mine)
            names.append(host)
        groups[name] = (names, dict(data))
    everyone = list(own)
    base = groups.pop("all", ([], {}))[1]
    groups.setdefault(path.stem, (everyone, {}))
    files = group_data_files(path, Path(cwd or Path.cwd()))
    base = {**base, **files.pop("all", {})}
    for name, data in files.items():
        if name in groups:
            groups[name][1].update(data)
    merged = {}
    for host in everyone:
        data = dict(base)
        for members, group in groups.values():
            if host in members:
                data.update(group)
        merged[host] = {**data, **own[host]}
    return merged
