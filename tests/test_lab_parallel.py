"""What lets the lab tests run in two processes side by side (./run test -n 2): one lock for the lab's
shared pieces, DNS records that never change under traffic, and backends of their own for the
fleet's and the benchmark's gateways."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab import control, dns, machines
from lab.fleet import lab_gateways
from lab.topology import (
    BACKENDS,
    BENCH_GATEWAYS,
    PLANNED_HOSTS,
    SIDE_BACKENDS,
    TEST_GATEWAY,
    TRIXIE_GATEWAY,
    backends_of,
    by_name,
    fleet_hosts,
    gateway,
)

TRY_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(3)
"""


def other_process_gets(lock_file: Path) -> bool:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(lock_file)]).returncode == 0


def test_the_lab_lock_keeps_other_processes_out_until_the_outermost_holder_lets_go(tmp_path, monkeypatch):
    lock_file = tmp_path / "lab.lock"
    monkeypatch.setattr(machines, "LOCK_FILE", lock_file)
    monkeypatch.setattr(machines, "STATE_DIR", tmp_path)
    with machines.lab_lock():
        assert not other_process_gets(lock_file)
        with machines.lab_lock():  # re-entrant: ensure_fleet -> ensure_host
            assert not other_process_gets(lock_file)
        assert not other_process_gets(lock_file)
    assert other_process_gets(lock_file)


def test_the_lab_lock_is_a_decorator_too(tmp_path, monkeypatch):
    lock_file = tmp_path / "lab.lock"
    monkeypatch.setattr(machines, "LOCK_FILE", lock_file)
    monkeypatch.setattr(machines, "STATE_DIR", tmp_path)

    @machines.lab_lock()
    def held() -> bool:
        return other_process_gets(lock_file)

    assert held() is False and held() is False
    assert other_process_gets(lock_file)


def test_the_lab_dns_serves_every_planned_host_and_the_preflight_cases_from_the_start(monkeypatch):
    served = {}
    monkeypatch.setattr(dns, "ensure", lambda hosts, extra=(): served.update(hosts=hosts, extra=extra))
    monkeypatch.setattr(control, "built_hosts", lambda: [])
    control.refresh_dns()
    names = {h.name for h in served["hosts"]}
    assert {h.name for h in PLANNED_HOSTS} <= names
    assert {"gw2", "gw3", "gw6", "trixie1", "fleet1", "fleet3", "llm3", "llm4"} <= names
    text = dns.render_conf(served["hosts"])
    for record in dns.PREFLIGHT_RECORDS:
        assert record in text.splitlines()
    assert f"server=/broken.lab.test/{dns.DEAD_NAMESERVER}" in text


def test_fleet_and_benchmark_gateways_are_deployed_with_backends_of_their_own():
    assert backends_of([TEST_GATEWAY]) == backends_of([gateway(1)]) == BACKENDS
    assert backends_of(fleet_hosts(3)) == backends_of(BENCH_GATEWAYS[:2]) == SIDE_BACKENDS
    assert [b.models for b in SIDE_BACKENDS] == [b.models for b in BACKENDS]
    assert {b.address for b in SIDE_BACKENDS}.isdisjoint(b.address for b in BACKENDS)
    assert by_name("llm3") == SIDE_BACKENDS[0] and by_name("trixie1") == TRIXIE_GATEWAY
    _, data = lab_gateways(fleet_hosts(2))
    assert sorted(data["litellm_backends"]) == ["llm3", "llm4"]
    _, data = lab_gateways([TEST_GATEWAY])
    assert sorted(data["litellm_backends"]) == ["llm1", "llm2"]


def test_one_deploy_mixing_fleet_and_other_gateways_is_refused():
    with pytest.raises(ValueError, match="deploy them apart"):
        backends_of([TEST_GATEWAY, *fleet_hosts(1)])



def test_the_fleet_benchmark_and_master_key_modules_share_one_process_and_every_other_lab_module_the_other():
    from lab.topology import SIDE_BACKENDS, TRIXIE_GATEWAY, backends_of
    from tests.conftest import group_of

    assert group_of("tests/lab/test_fleet.py::test_x") == group_of("tests/lab/test_bench.py::test_y") \
        == group_of("tests/lab/test_secrets.py::test_z") == "lab: own hosts"
    assert backends_of([TRIXIE_GATEWAY]) == SIDE_BACKENDS  # never the backends the gw2 tests slow or stop
    assert {group_of(f"tests/lab/{m}.py::t") for m in ("test_deploy", "test_debian13", "test_zero_downtime")} \
        == {"lab: gw2"}
    assert group_of("tests/test_settings.py::test_a") == "tests/test_settings.py::test_a"  # anywhere
