"""`fab drain GATEWAY` / `fab undrain GATEWAY`: take a gateway out of the fleet's address for maintenance.

Every front of the fleet gets the same state for the gateway (whichever holds the address, and
whichever takes it over later), and keeps it across reloads and deploys until `undrain`. A drain
waits until the requests already sent to the gateway have finished, at most litellm_drain_timeout.
"""
from __future__ import annotations

import json

from fabric import Connection, task
from invoke.exceptions import Exit

from fabfile.common import fleet_of, verdicts
from gateway.commands import fleet_member_command, primary_command
from gateway.remote import Fleet, Gateway, Outcome, on_each
from gateway.roll import member_answer

GATEWAY_HELP = "the gateway's inventory name (or SSH address)"


def members_of(fleet: Fleet, target: Gateway) -> list[Gateway]:
    """The gateways whose fronts share `target`'s fleet address (its own included)."""
    assert target.settings.fleet
    return [g for g in fleet.gateways if g.settings.fleet and g.settings.fleet.address == target.settings.fleet.address]


def missed_everywhere(fleet: Fleet, target: Gateway, state: str) -> list[str]:
    """Set `target`'s state in every front of its fleet; the fronts that did not do it (each with why)."""
    return [f"{o.host} ({o.error or o.value[1]})" for o in set_everywhere(fleet, target, state)
            if o.error or not o.value[0]]


def set_everywhere(fleet: Fleet, target: Gateway, state: str) -> list[Outcome]:
    """Set `target`'s state (drain, ready) in every front of its fleet; a drain waits for its requests."""
    wait = target.settings.drain_timeout if state == "drain" else 0

    def apply(g: Gateway, connection: Connection) -> tuple[bool, str]:
        result = g.run(connection, fleet_member_command(g.settings, target.name, state, wait))
        told, finished, detail = member_answer(state, wait, result.stdout, result.exited, result.stderr)
        return told and finished, f"{target.name}: {detail}" if told else detail

    return on_each(members_of(fleet, target), apply)


def fleet_member(c, gateway: str, otherwise: str) -> tuple[Fleet, Gateway]:
    """The inventory's fleet and GATEWAY in it; exit 2 naming the gateway and `otherwise` when it is in no fleet."""
    fleet = fleet_of(c)
    try:
        [target] = fleet.select(gateway)
    except ValueError as error:
        raise Exit(str(error), code=2) from None
    if not target.settings.fleet:
        raise Exit(f"{target.name} is not in a fleet (litellm_fleet_address is None): {otherwise}", code=2)
    return fleet, target


def _set(c, gateway: str, state: str) -> None:
    fleet, target = fleet_member(c, gateway,
                                 "nothing sends it requests but its own clients; stop or restart it instead")
    print(f"{state} {target.name} in every front of the fleet at {target.settings.fleet.address} "
          f"({', '.join(g.name for g in members_of(fleet, target))})")
    verdicts(set_everywhere(fleet, target, state), "FRONT", "FAILED",
             f"{target.name} is not {'drained' if state == 'drain' else 'back'} in every front (see above)")


@task(help={"gateway": GATEWAY_HELP})
def drain(c, gateway):
    """Take GATEWAY out of the fleet's load balancing: no new requests, those running finish (maintenance)."""
    _set(c, gateway, "drain")


@task(help={"gateway": GATEWAY_HELP, "wait": "seconds the sentinels may take to promote a replica (default 30)"})
def primary_off(c, gateway, wait=30):
    # Adjacent literals, one docstring: `fab --list` shows its first line whole.
    ("Move the fleet's rate-limit store primary (Redis) off GATEWAY before its maintenance: a replica takes over, "
     "no counter is lost.")
    fleet, target = fleet_member(c, gateway, "its Redis is its own")
    members = {member.settings.fleet.address_of(member.name): member for member in members_of(fleet, target)}
    off = target.settings.fleet.address_of(target.name)
    answers = []
    for own, g in members.items():  # the first other whose sentinel answers does it; the sentinels agree
        if g is target:
            continue
        try:
            with g.connection() as connection:
                result = g.run(connection, primary_command(g.settings, own, off, float(wait)))
            answer = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {
                "error": result.stderr.strip()[-300:] or f"exit status {result.exited}"}
        except Exception as error:  # an unreachable member: ask the next one
            answer = {"error": f"unreachable ({type(error).__name__}: {error})"}
        if "error" not in answer:
            now = members[answer["primary"]].name if answer["primary"] in members else answer["primary"]
            print(f"the rate-limit store's primary is on {now}" + (f" (moved off {target.name})" if answer["moved"]
                                                                  else f", not on {target.name}: nothing to move"))
            return
        answers.append(f"{g.name}: {answer['error']}")
    raise Exit("no sentinel moved the primary: " + "; ".join(answers) + ". `fab status` shows the store", code=1)


@task(help={"gateway": GATEWAY_HELP})
def undrain(c, gateway):
    """Put GATEWAY back into the fleet's load balancing (it takes requests again once its checks pass)."""
    _set(c, gateway, "ready")
