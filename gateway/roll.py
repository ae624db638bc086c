"""One roll through a fleet, whichever tool carries its commands (the deploy's pyinfra in
gateway/rolling.py, `fab restart` and `fab rollback` over Fabric in fabfile/gateways.py).

A gateway's turn: it is drained in every front of the fleet (a front that cannot be told is
named, the turn goes on: the others still send it nothing new), changed, and put back in every
front once it answers. A change that fails leaves it drained (the others carry the traffic) and
stops the roll; so does a gateway that could not be put back everywhere.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class NotPutBack(RuntimeError):
    """The gateway changed, but some front still has it drained."""


def member_answer(state: str, wait: float, stdout: str, exit_status: int,
                  failure_text: str) -> tuple[bool, bool, str]:
    """What one front answered to the state it was told (on_host/fleet_member.py prints JSON):
    (told, finished, what happened). A drain is finished once the requests already sent to the
    gateway have; one told whose requests outlast the wait still sends it nothing new."""
    answer = json.loads(stdout) if stdout.strip().startswith("{") else {}
    if "error" in answer or exit_status or not answer:
        return False, False, answer.get("error") or failure_text.strip()[-300:] or f"exit status {exit_status}"
    left = answer.get("in_flight", 0)
    status = answer.get("status", state)
    if state != "drain":  # back in: it may take requests at once
        return True, True, f"{status}, {left} request(s) running"
    return True, left == 0, f"{status}, {left} request(s) still running" + (f" after {wait:.0f} s" if left else "")


def stays_drained(gateway: str) -> str:
    return f"{gateway} stays drained (the others carry the traffic): `fab undrain {gateway}` once it is fixed"


def take_turn(gateway: str, set_everywhere: Callable[[str], list[str]], change: Callable[[], T],
              warn: Callable[[str], None]) -> T:
    """`gateway`'s turn: drained everywhere, `change`, put back. `set_everywhere(state)` tells every
    front of the fleet and returns those it could not (each with why). What `change` raises stops
    the roll with the gateway drained; NotPutBack when some front could not be told it is back."""
    for missed in set_everywhere("drain"):
        warn(f"{gateway}: warning: not drained in the front of {missed}")
    result = change()
    missed = set_everywhere("ready")
    if missed:
        raise NotPutBack(f"{gateway}: changed, but not put back in the front of {', '.join(missed)}: "
                         f"run `fab undrain {gateway}`")
    return result
