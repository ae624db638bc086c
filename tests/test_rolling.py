"""The roll's turns: inventory order whatever order the gateways arrive in, a batch at a time, and a
failure stops it for those still waiting (gateway/rolling.py; the lab's fleet test rolls real hosts)."""
from __future__ import annotations

import threading
import time

from gateway.rolling import GATHER, Roll

ORDER = ["fleet1", "fleet2", "fleet3"]


def run_roll(roll: Roll, arrivals: list[tuple[str, float]], fails: str | None = None) -> tuple[list, dict]:
    """Each gateway arrives after its delay, takes its turn (0.2 s of work), and records what it saw."""
    turns, outcomes, lock = [], {}, threading.Lock()

    def gateway(name: str, delay: float) -> None:
        time.sleep(delay)
        stopped = roll.wait_for_turn(name)
        if stopped:
            outcomes[name] = f"not changed: stopped at {stopped}"
            return
        with lock:
            turns.append((name, "start", roll.running))
        time.sleep(0.2)
        if name == fails:
            outcomes[name] = f"failed; not changed: {roll.stop_here(name)}"
        else:
            outcomes[name] = "changed"
        roll.turn_done()

    threads = [threading.Thread(target=gateway, args=arrival) for arrival in arrivals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return turns, outcomes


def test_turns_go_in_inventory_order_though_the_last_gateway_arrives_first():
    started = time.monotonic()
    turns, outcomes = run_roll(Roll(ORDER, 1), [("fleet3", 0.0), ("fleet2", 0.1), ("fleet1", 0.3)])
    assert [name for name, _, _ in turns] == ORDER
    assert all(running == 1 for _, _, running in turns)  # one at a time
    assert outcomes == dict.fromkeys(ORDER, "changed")
    assert time.monotonic() - started >= GATHER  # the first turn waited for the line to form


def test_a_batch_of_two_changes_two_at_once_in_order():
    turns, _ = run_roll(Roll(ORDER, 2), [("fleet2", 0.0), ("fleet3", 0.0), ("fleet1", 0.2)])
    assert [name for name, _, _ in turns] == ORDER
    assert max(running for _, _, running in turns) == 2


def test_the_first_failure_stops_the_roll_and_names_those_not_changed():
    _, outcomes = run_roll(Roll(ORDER, 1), [("fleet3", 0.0), ("fleet1", 0.0), ("fleet2", 0.0)], fails="fleet2")
    assert outcomes == {
        "fleet1": "changed",
        "fleet2": "failed; not changed: ['fleet3']",
        "fleet3": "not changed: stopped at fleet2",
    }


def test_a_gateway_that_is_not_changed_does_not_hold_up_the_others():
    """fleet1 has nothing to change (its operation's `_if` is false): it never lines up."""
    turns, outcomes = run_roll(Roll(ORDER, 1), [("fleet3", 0.0), ("fleet2", 0.0)])
    assert [name for name, _, _ in turns] == ["fleet2", "fleet3"]
    assert outcomes == {"fleet2": "changed", "fleet3": "changed"}


class Member:
    """A fleet member as pyinfra's inventory gives it: run_shell_command answers with pyinfra's own
    CommandOutput, here what on_host/fleet_member.py prints."""

    def __init__(self, name: str, answer: str | Exception, ok: bool = True) -> None:
        self.name, self.answer, self.ok, self.commands = name, answer, ok, []

    def run_shell_command(self, command: str, **_arguments):
        from pyinfra.connectors.util import CommandOutput, OutputLine

        self.commands.append(command)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.ok, CommandOutput([OutputLine("stderr", "a warning on stderr"), OutputLine("stdout", self.answer)])


def test_every_front_is_told_and_those_that_could_not_be_are_named(monkeypatch):
    from types import SimpleNamespace

    from gateway import rolling
    from tests.test_fleet import fleet_settings

    settings = fleet_settings()
    members = {"gw-a.example.org": Member("gw-a.example.org", '{"in_flight": 0}'),
               "gw-b.example.org": Member("gw-b.example.org", "not running", ok=False),
               "gw-c.example.org": Member("gw-c.example.org", OSError("connection lost"))}
    monkeypatch.setattr(rolling, "state", SimpleNamespace(inventory=SimpleNamespace(get_host=members.__getitem__)))
    monkeypatch.setattr(rolling, "host", SimpleNamespace(current_op_global_arguments={"_sudo": True, "_timeout": 5}))
    missed = rolling.set_in_every_front(settings, "gw-b.example.org", "drain")
    assert missed == ["gw-b.example.org (a warning on stderr\nnot running)",
                      "gw-c.example.org (OSError: connection lost)"]
    command = members["gw-a.example.org"].commands[0]
    assert "on_host.fleet_member" in command and "--server gw-b.example.org --state drain" in command
    assert f"--wait {settings.drain_timeout}" in command


def test_a_gateway_whose_change_is_not_needed_is_asked_in_its_turn_and_never_drained(monkeypatch):
    """in_turn asks `needed` only once the turn has come (arrival order stays the roll's); a gateway
    that needs no change is neither drained nor changed, and frees the turn for the next one."""
    from types import SimpleNamespace

    from gateway import rolling
    from tests.test_fleet import fleet_settings

    roll, told, done = Roll(ORDER, 1), [], []
    monkeypatch.setattr(rolling, "current_roll", lambda settings, batch: roll)
    monkeypatch.setattr(rolling, "set_in_every_front", lambda settings, name, wanted: told.append((name, wanted)) or [])
    settings = fleet_settings()
    asked = []

    def turn(name: str, needed: bool) -> bool:
        monkeypatch.setattr(rolling, "host", SimpleNamespace(name=name))
        return rolling.in_turn(settings, lambda: done.append(name),
                               needed=lambda: asked.append((name, roll.running)) or needed)

    assert turn("fleet1", needed=False) is False
    assert (told, done, asked) == ([], [], [("fleet1", 1)])  # asked inside its turn, nothing drained
    assert turn("fleet2", needed=True) is True and roll.running == 0
    assert told == [("fleet2", "drain"), ("fleet2", "ready")] and done == ["fleet2"]
