"""The tree is laid out by where code runs: a module's path says what it may import."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OURS = {"gateway", "fabfile", "checks", "on_host", "in_proxy", "tasks", "lab", "bench", "tests", "inventory"}


def imports(path: Path) -> set[str]:
    """Top-level names a module imports (relative imports count as its own package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_code_run_on_the_hosts_imports_the_standard_library_only():
    for path in (REPO / "on_host").glob("*.py"):
        assert imports(path) <= set(sys.stdlib_module_names) | {"__future__"}, path


def test_code_run_inside_the_proxy_imports_nothing_of_the_control_side():
    for path in (REPO / "in_proxy").glob("*.py"):
        assert not imports(path) & OURS, path


def test_the_control_side_imports_neither_the_tasks_nor_the_cli_packages():
    for path in (REPO / "gateway").rglob("*.py"):
        assert not imports(path) & {"fabfile", "checks", "tasks", "on_host", "in_proxy", "lab", "bench"}, path


def test_every_lab_test_module_is_marked_lab():
    """`-m "not lab"` must leave out everything that needs the lab."""
    for path in (REPO / "tests" / "lab").glob("test_*.py"):
        assert "pytestmark = pytest.mark.lab" in path.read_text(), path
