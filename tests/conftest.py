"""For every test: the metrics token is made in the test's own directory, never in the home of whoever
runs the tests. And how the lab tests are split over two processes (`./run test` runs them with
pytest-xdist's `-n 2`).

The lab modules whose hosts are their own, the benchmark's (gw3, gw4), the fleet's (fleet1..3) and
the master key's (gw3), with the side backends llm3, llm4 (lab/topology.backends_of), run in one
process; every other lab module (gw2, gw1, llm1, llm2; trixie1 with the side backends) in the
other, each group in its file order. What the two groups share is built under one lock
(lab/machines.lab_lock); mon1, which both deploy, is held by one at a time
(tests/lab/conftest.monitoring_host_held). pytest-xdist's own --dist loadgroup does not group with
this pytest (the marks are ignored), so the split is a scheduler of our own.
"""
from __future__ import annotations

import pytest

from gateway import settings

OWN_HOSTS = ("tests/lab/test_bench.py", "tests/lab/test_fleet.py", "tests/lab/test_secrets.py")


def group_of(nodeid: str) -> str:
    """The unit of work a test belongs to: a lab group, or the test alone."""
    path = nodeid.split("::", 1)[0]
    if path in OWN_HOSTS:
        return "lab: own hosts"
    if path.startswith("tests/lab/"):
        return "lab: gw2"
    return nodeid


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class LabGroups(LoadScopeScheduling):
        """The biggest units go out first, one to each process: the two lab groups."""

        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return LabGroups(config, log)


@pytest.fixture(autouse=True)
def _metrics_token_of_the_test(tmp_path_factory, monkeypatch):
    """The default litellm_metrics_token_file, for this test: a file of its own (the lab's gateways
    use the lab's, lab/fleet.py)."""
    path = tmp_path_factory.mktemp("metrics") / "metrics.token"
    monkeypatch.setitem(settings.DEFAULTS, "litellm_metrics_token_file", str(path))
