"""The tree is laid out by where code runs: a module's path says what it may import."""
from __future__ import annotations

import ast
import subprocess
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


def modules(folder: str, pattern: str = "*.py") -> list[Path]:
    found = sorted((REPO / folder).rglob(pattern))
    assert found, f"no {pattern} under {folder}/"  # a renamed folder must not pass with nothing checked
    return found


def test_code_run_on_the_hosts_imports_the_standard_library_only():
    for path in modules("on_host"):
        assert imports(path) <= set(sys.stdlib_module_names) | {"__future__"}, path


def test_code_run_inside_the_proxy_imports_nothing_of_the_control_side():
    """Its own modules (installed beside it) only."""
    for path in modules("in_proxy"):
        assert not imports(path) & (OURS - {"in_proxy"}), path


def test_the_control_side_imports_neither_the_tasks_nor_the_cli_packages():
    """It may read a rule of the hosts' (on_host/, standard library only), so the rule is written once."""
    for path in modules("gateway"):
        assert not imports(path) & {"fabfile", "checks", "tasks", "in_proxy", "lab", "bench"}, path


def test_every_lab_test_module_is_marked_lab():
    """`-m "not lab"` must leave out everything that needs the lab: pytest itself selects nothing there."""
    modules("tests/lab", "test_*.py")
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "not lab", "tests/lab",
                             "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True)
    assert "no tests collected" in result.stdout and "deselected" in result.stdout, result.stdout[-2000:]
