"""Rolling changes through a fleet: one gateway (or a small batch) at a time, drained from every
front while it changes, put back once verified; the first that fails stops the roll.

A deploy runs each operation on every host at once; the switch-over of each fleet gateway takes
its turn here. Before it switches, the gateway is drained in the backend of gateways of every
front of the fleet (whichever holds the address) and the requests already sent to it finish; after
its switch-over and verification it is put back. A failure leaves it drained (the others carry the
traffic), and every gateway still waiting for its turn is left unchanged, named in the error.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pyinfra import host, logger, state
from pyinfra.api.exceptions import OperationError

from gateway.commands import fleet_member_command
from gateway.roll import NotPutBack, member_answer, stays_drained, take_turn
from gateway.settings import Settings

GATHER = 1.0  # seconds from the first arrival in which every gateway lines up, so the roll keeps inventory order


class Roll:
    """The roll of one deploy run, shared by its hosts' switch-overs (greenlets of one process).

    Which gateways take part is known only when the operation runs (its `_if` says whether a gateway
    changes), so each lines up on arrival and the first turn is given GATHER seconds after the first
    arrival: by then every gateway of the operation has lined up (they arrive together) and the
    turns go in inventory order, `batch` at a time."""

    def __init__(self, order: list[str], batch: int) -> None:
        self.order, self.batch = order, batch
        self.turns = threading.Condition()
        self.waiting: list[str] = []
        self.running = 0
        self.stopped_at: str | None = None
        self.opened: float | None = None

    def next_in_line(self, name: str) -> bool:
        return self.running < self.batch and name == min(self.waiting, key=self.order.index)

    def wait_for_turn(self, name: str) -> str | None:
        """Block until `name` may change; the gateway the roll stopped at, if it stopped before."""
        with self.turns:
            self.waiting.append(name)
            if self.opened is None:
                self.opened = time.monotonic()
            while time.monotonic() < self.opened + GATHER or not self.next_in_line(name):
                self.turns.wait(0.1)
            self.waiting.remove(name)
            stopped = self.stopped_at
            if not stopped:
                self.running += 1
            self.turns.notify_all()
        return stopped

    def stop_here(self, name: str) -> list[str]:
        """The roll stops at `name`; the gateways still waiting, which will not change."""
        with self.turns:
            self.stopped_at = name
            return sorted(self.waiting, key=self.order.index)

    def turn_done(self) -> None:
        with self.turns:
            self.running -= 1
            self.turns.notify_all()


def current_roll(settings: Settings, batch: int) -> Roll:
    roll = getattr(state, "litellm_roll", None)
    if roll is None:
        assert settings.fleet
        roll = state.litellm_roll = Roll([name for name, _ in settings.fleet.members], batch)
    return roll


def set_in_every_front(settings: Settings, gateway: str, wanted: str) -> list[str]:
    """Set `gateway`'s state in every fleet member's front; the members that could not be told (a
    drain whose requests outlast the wait is only logged: nothing new reaches the gateway)."""
    assert settings.fleet
    wait = settings.drain_timeout if wanted == "drain" else 0
    missed = []
    for name, _ in settings.fleet.members:
        member = state.inventory.get_host(name)
        arguments = {k: v for k, v in (host.current_op_global_arguments or {}).items() if k in ("_sudo", "_sudo_user")}
        try:
            ok, output = member.run_shell_command(fleet_member_command(settings, gateway, wanted, wait), **arguments)
            told, finished, detail = member_answer(wanted, wait, output.stdout if ok else "", 0 if ok else 1,
                                                   output.output)
        except Exception as error:  # a member that cannot be reached serves nobody
            told, finished, detail = False, False, f"{type(error).__name__}: {error}"
        if not told:
            missed.append(f"{name} ({detail or 'no answer'})")
        elif not finished:
            logger.warning(f"{name}: {gateway}: {detail}")
    return missed


def in_turn(settings: Settings, change: Callable[[], object], batch: int = 1,
            needed: Callable[[], bool] = lambda: True) -> bool:
    """`change` in this host's turn of the roll (inventory order, `batch` at a time): drained in every
    front around it, put back after it (gateway/roll.py); a failure stops the roll here. `needed` is
    asked once the turn has come (so however long it takes, the turns keep inventory order): when it
    says no, the gateway is neither drained nor changed. Whether it was changed."""
    roll = current_roll(settings, batch)
    stopped = roll.wait_for_turn(host.name)
    if stopped:
        raise OperationError(f"{host.name}: not changed: the roll stopped at {stopped}")
    try:
        if not needed():
            return False
        take_turn(host.name, lambda wanted: set_in_every_front(settings, host.name, wanted), change, logger.warning)
        return True
    except Exception as error:
        waiting = roll.stop_here(host.name)
        host.log(f"roll stopped here: {stays_drained(host.name)}; not changed: {', '.join(waiting) or 'none'}",
                 log_func=logger.error)
        if isinstance(error, NotPutBack):
            raise OperationError(str(error)) from None
        raise
    finally:
        roll.turn_done()
