"""The one way the gateway waits: ask again until the answer is good or a deadline has passed.

Used on the hosts (readiness, the switch-over, drains) and, through imports, by the control side,
the lab and the tests: a wait never sleeps past its deadline, always asks at least once, and hands
back the last answer so a failure can say what was seen.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(ask: Callable[[], T], timeout: float, interval: float = 0.5,
               good: Callable[[T], bool] = bool) -> tuple[bool, T]:
    """Call `ask` every `interval` seconds until `good(answer)` or `timeout` seconds have passed:
    (whether it became good, the last answer)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = ask()
        if good(answer):
            return True, answer
        left = deadline - time.monotonic()
        if left <= 0:
            return False, answer
        time.sleep(min(interval, left))
