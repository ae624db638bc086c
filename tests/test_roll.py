"""The one roll rule (gateway/roll.py) the deploy and `fab restart`/`fab rollback` both follow; the
lab's fleet tests roll real gateways with each."""
from __future__ import annotations

import json

import pytest

from gateway.roll import NotPutBack, member_answer, stays_drained, take_turn


class Fronts:
    """Every front of a fleet, as a turn tells them: what they were told, and who could not be."""

    def __init__(self, missing: dict[str, list[str]] | None = None) -> None:
        self.told: list[str] = []
        self.missing = missing or {}

    def __call__(self, state: str) -> list[str]:
        self.told.append(state)
        return self.missing.get(state, [])


def test_a_turn_drains_everywhere_changes_then_puts_back():
    fronts, warnings, steps = Fronts(), [], []
    answer = take_turn("gw-a", fronts, lambda: steps.append(list(fronts.told)) or "switched", warnings.append)
    assert answer == "switched" and steps == [["drain"]] and fronts.told == ["drain", "ready"] and warnings == []


def test_a_change_that_fails_leaves_the_gateway_drained_and_stops_the_roll():
    fronts = Fronts()

    def broken() -> None:
        raise RuntimeError("the new instance did not answer")

    with pytest.raises(RuntimeError, match="did not answer"):
        take_turn("gw-a", fronts, broken, print)
    assert fronts.told == ["drain"]  # never put back: the others carry the traffic
    assert "gw-a stays drained" in stays_drained("gw-a") and "`fab undrain gw-a`" in stays_drained("gw-a")


def test_a_front_that_missed_the_drain_is_named_and_the_turn_goes_on_but_one_that_missed_the_put_back_stops_it():
    warnings: list[str] = []
    take_turn("gw-a", Fronts({"drain": ["gw-c (connection lost)"]}), lambda: None, warnings.append)
    assert warnings == ["gw-a: warning: not drained in the front of gw-c (connection lost)"]
    with pytest.raises(NotPutBack, match=r"not put back in the front of gw-c \(connection lost\): run `fab undrain"):
        take_turn("gw-a", Fronts({"ready": ["gw-c (connection lost)"]}), lambda: None, warnings.append)


def test_what_a_front_answers_is_read_the_same_by_both_tools():
    drained = json.dumps({"status": "DRAIN", "in_flight": 0})
    assert member_answer("drain", 30, drained, 0, "") == (True, True, "DRAIN, 0 request(s) still running")
    busy = json.dumps({"status": "DRAIN", "in_flight": 2})
    assert member_answer("drain", 30, busy, 0, "") == (True, False, "DRAIN, 2 request(s) still running after 30 s")
    back = json.dumps({"status": "UP", "in_flight": 1})
    assert member_answer("ready", 0, back, 0, "") == (True, True, "UP, 1 request(s) running")
    assert member_answer("drain", 30, json.dumps({"error": "no such server"}), 1, "") == (
        False, False, "no such server")
    assert member_answer("drain", 30, "", 255, "ssh: connect refused\n") == (False, False, "ssh: connect refused")
    assert member_answer("drain", 30, "", 1, "") == (False, False, "exit status 1")
