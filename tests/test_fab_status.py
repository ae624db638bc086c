"""`fab status` judges each fleet by its own gateways: a standalone gateway in the same inventory
is not a fleet member (it has no keepalived, no Redis of the fleet)."""
from __future__ import annotations

from types import SimpleNamespace

from fabfile.status import fleets_of, print_fleet
from gateway.remote import Outcome
from gateway.settings import load
from tests.test_fleet import GATEWAYS, fleet_settings
from tests.test_settings import GOOD_KEY, seed_data


def healthy_view(name: str, holder: bool, members: list[str]) -> dict:
    return {"fleet": {"unit": "active", "holder": holder,
                      "gateways": {m: {"status": "UP", "in_flight": 0} for m in members} if holder else {},
                      "redis": {"role": "master" if holder else "slave", "link": None if holder else "up",
                                "primary": "10.1.2.11", "primary_flags": "master",
                                "replicas": len(members) - 1, "sentinels": len(members)}}}


def test_each_fleet_is_judged_by_its_own_gateways_and_a_standalone_one_by_none(capsys):
    members = [name for name, _ in GATEWAYS]
    fleet = [SimpleNamespace(name=name, settings=fleet_settings(i)) for i, name in enumerate(members)]
    alone = SimpleNamespace(name="gw1.example.org", settings=load(seed_data(litellm_master_key=GOOD_KEY)))
    gateways = [alone, *fleet]
    outcomes = [Outcome(alone.name, {"fleet": None})]
    outcomes += [Outcome(g.name, healthy_view(g.name, i == 0, members)) for i, g in enumerate(fleet)]
    grouped = fleets_of(gateways, outcomes)
    assert list(grouped) == ["10.1.2.100"] and [g.name for g, _ in grouped["10.1.2.100"]] == members
    assert print_fleet([g for g, _ in grouped["10.1.2.100"]], [o for _, o in grouped["10.1.2.100"]])
    printed = capsys.readouterr().out
    assert "RATE LIMITS (ok)" in printed and "2 of 2 replicas, 3 of 3 sentinels" in printed, printed
    assert alone.name not in printed
