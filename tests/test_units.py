"""Every systemd unit the deploy installs, read as systemd reads it: none can be left dead by its start
limit while its host runs, and each has a memory and a task cap (fast: rendered files, no host)."""
from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from gateway.monitoring.files import monitoring_files, node_exporter_files
from gateway.monitoring.settings import load_monitoring, watch
from gateway.services.registry import managed_files
from tests.test_fleet import fleet_settings
from tests.test_monitoring import PASSWORD, WEBHOOK, gateway


def unit_files(tmp_path: Path) -> dict[str, str]:
    """The units of a fleet gateway (front, instances, Redis, Sentinel, the address) and of the
    monitoring host (Prometheus, Alertmanager, blackbox, node exporter)."""
    s = fleet_settings(0, litellm_metrics_token_file=str(tmp_path / "metrics.token"))
    rows = managed_files(s, "gw-a.example.org", '{"version": 1, "keys": {}}\n')
    m = load_monitoring({**WEBHOOK, "monitoring_bind_address": "127.0.10.90"})
    w = watch([gateway(tmp_path)], [("mon1.lab.test", "127.0.10.90")])
    rows += monitoring_files(m, w, "mon1.lab.test", PASSWORD) + node_exporter_files("127.0.10.90", "mon1.lab.test",
                                                                                     PASSWORD)
    return {Path(f.path).name: f.content.decode() for f in rows if f.path.endswith(".service")}


def sections(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(text)
    return parser


def test_the_deploy_installs_the_units_of_every_service(tmp_path):
    names = set(unit_files(tmp_path))
    assert {"litellm@.service", "litellm-front.service", "litellm-redis.service", "litellm-sentinel.service",
            "litellm-fleet.service"} <= names and len(names) >= 9, names


def test_no_unit_can_be_left_dead_by_its_start_limit_and_each_has_memory_and_task_caps(tmp_path):
    for name, text in unit_files(tmp_path).items():
        unit = sections(text)
        assert unit["Service"].get("Restart") in ("always", "on-failure"), name
        assert unit["Unit"].get("StartLimitIntervalSec") == "0", f"{name}: systemd may give up restarting it"
        memory, tasks = unit["Service"].get("MemoryMax", ""), unit["Service"].get("TasksMax", "")
        assert memory[:-1].isdigit() and memory[-1] in "MG", f"{name}: MemoryMax={memory!r}"
        assert tasks.isdigit() and int(tasks) >= 16, f"{name}: TasksMax={tasks!r}"


@pytest.mark.parametrize("workers, memory", [(1, "1536M"), (2, "2048M"), (8, "5120M")])
def test_an_instances_memory_cap_grows_with_its_workers(tmp_path, workers, memory):
    s = fleet_settings(0, litellm_metrics_token_file=str(tmp_path / "t"), litellm_workers=workers)
    [instance] = [f for f in managed_files(s, "gw-a.example.org", "{}") if f.path.endswith("litellm@.service")]
    assert sections(instance.content.decode())["Service"]["MemoryMax"] == memory
