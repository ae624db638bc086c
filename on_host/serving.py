"""Which proxy instance serves: the one running and enabled (what a boot starts), else the one
running. The one rule, read by the switch-over (on_host/switch.py), `fab status`, the deploy's facts
(gateway/facts.py), the tests and the benchmark.

    python3 -m on_host.serving UNIT...   prints the serving unit (nothing when none runs)
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import TypeVar

Key = TypeVar("Key")


def choose(states: Mapping[Key, tuple[bool, bool]]) -> Key | None:
    """The serving one of `states` ({instance: (running, enabled)}, in the instances' order)."""
    running = [key for key, (active, _) in states.items() if active]
    return next((key for key in running if states[key][1]), running[0] if running else None)


def unit_state(unit: str) -> tuple[bool, bool]:
    """(running, enabled) of a unit, as systemd says now."""
    def ok(*args: str) -> bool:
        return subprocess.run(["systemctl", *args, "--quiet", unit], capture_output=True).returncode == 0
    return ok("is-active"), ok("is-enabled")


def main(argv: list[str] | None = None) -> int:
    units = sys.argv[1:] if argv is None else argv
    found = choose({unit: unit_state(unit) for unit in units})
    if found:
        print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
