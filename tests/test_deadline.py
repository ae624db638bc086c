"""The one wait (on_host/deadline.py): asks at least once, stops at the first good answer, never
sleeps past its deadline, and hands back the last answer for the failure message."""
from __future__ import annotations

import itertools
import time

from on_host.deadline import wait_until


def test_the_first_good_answer_ends_the_wait():
    answers = itertools.count()
    assert wait_until(lambda: next(answers), timeout=5, interval=0.01, good=lambda n: n >= 3) == (True, 3)


def test_a_zero_timeout_still_asks_once_and_gives_the_answer_back():
    asked = []
    assert wait_until(lambda: asked.append(1) or "down", timeout=0, good=lambda a: a == "up") == (False, "down")
    assert asked == [1]


def test_the_deadline_bounds_the_wait_whatever_the_interval():
    started = time.monotonic()
    came, answer = wait_until(lambda: None, timeout=0.3, interval=10)
    assert (came, answer) == (False, None) and time.monotonic() - started < 1.0
