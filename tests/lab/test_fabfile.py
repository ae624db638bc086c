"""The operator tasks, run with `fab` against the lab over real SSH."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from gateway.lock import read_lock
from gateway.settings import load
from lab import control, machines
from lab.fleet import fleet_data, write_inventory
from lab.topology import BACKENDS, GATEWAY_PORT, MODELS, OLLAMA_PORT, gateway
from on_host.deadline import wait_until
from tests.lab.conftest import REPO, TEST_GATEWAY, deploy, service, ssh

pytestmark = pytest.mark.lab
FAB = str(Path(sys.executable).parent / "fab")


def inventory_file(tmp_path: Path, hosts=(TEST_GATEWAY,), **overrides) -> Path:
    return write_inventory(tmp_path / "inventory.py", hosts, **overrides)


def fab(tmp_path: Path, *args: str, hosts=(TEST_GATEWAY,), timeout: float = 300,
        **overrides) -> subprocess.CompletedProcess:
    """Run `fab ARGS` on an inventory of the given lab gateways, with settings overrides."""
    env = {**os.environ, "FABRIC_LITELLM_INVENTORY": str(inventory_file(tmp_path, hosts, **overrides))}
    return subprocess.run([FAB, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def main_pid() -> str:
    return service("MainPID")


def row(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(name))


def test_list_and_help_describe_every_task():
    listing = subprocess.run([FAB, "--list"], cwd=REPO, capture_output=True, text=True).stdout
    for name in ("status", "logs", "restart", "rollback", "health", "validate", "trial", "usage"):
        assert f"  {name} " in listing
    help_text = subprocess.run([FAB, "--help", "logs"], cwd=REPO, capture_output=True, text=True).stdout
    for flag in ("--lines", "--follow", "--since", "--grep", "--file", "--only"):
        assert flag in help_text


def test_status_shows_a_healthy_fleet(first_deploy, tmp_path):
    result = fab(tmp_path, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    gw = row(result.stdout, TEST_GATEWAY.fqdn)
    for expected in ("active/running", "healthy", "1.108.7", "shared", "none", " yes "):
        assert expected in gw, gw
    lock, _ = read_lock(load(fleet_data()).requirements)
    assert f"{hashlib.sha256(lock.encode()).hexdigest()[:10]} ok" in gw, gw  # the inventory's lock, installed
    for backend in BACKENDS:
        assert "all present" in row(result.stdout, backend.name)
    # The same as JSON, for scripts: each gateway's own report, the backends, the verdicts.
    shown = fab(tmp_path, "status", "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    report = json.loads(shown.stdout)
    mine = next(g for g in report["gateways"] if g["name"] == TEST_GATEWAY.fqdn)
    assert report["healthy"] and mine["healthy"] and mine["report"]["readiness"] == "healthy" \
        and mine["report"]["drift"] == []
    assert {b["name"] for b in report["backends"] if b["healthy"]} == {b.name for b in BACKENDS}


def test_status_with_a_backend_down_says_so_and_fails(first_deploy, tmp_path):
    llm1 = BACKENDS[0]
    machines.ssh(llm1, "systemctl stop ollama")
    try:
        result = fab(tmp_path, "status")
    finally:
        machines.ssh(llm1, "systemctl start ollama")
    assert result.returncode != 0
    assert " NO " in row(result.stdout, "llm1") and "all present" in row(result.stdout, "llm2")
    assert "NOT healthy" in result.stderr


def test_status_says_when_a_service_stops_and_rate_limits_are_no_longer_shared(first_deploy, tmp_path):
    ssh("systemctl stop litellm-redis.service")
    try:
        result = fab(tmp_path, "status")
    finally:
        ssh("systemctl start litellm-redis.service")
    assert result.returncode != 0
    shown = row(result.stdout, TEST_GATEWAY.fqdn)
    assert "PER WORKER (litellm-redis.service inactive)" in shown
    assert "NOT RUNNING: litellm-redis.service inactive" in shown
    assert fab(tmp_path, "status").returncode == 0


def test_status_reports_drift_of_every_kind_of_managed_file(first_deploy, tmp_path, deploy_dir):
    """Content of a rendered file, of a shipped one (the auth hook, the on-host checks), and a secret's
    mode. The deploy then puts each back; the serving instance read them as they were, so it keeps
    serving (no switch-over)."""
    before = main_pid()
    ssh("sed -i 's/^  num_retries: 2/  num_retries: 3/' /etc/litellm/config.yaml && "
        "echo '# edited' >> /etc/litellm/gateway_auth.py && "
        "echo '# edited' >> /usr/local/lib/litellm-gateway/on_host/smoke.py && chmod 640 /etc/litellm/litellm.env")
    result = fab(tmp_path, "status")
    assert result.returncode != 0
    assert "DRIFT: smoke.py, gateway_auth.py, config.yaml, litellm.env" in row(result.stdout, TEST_GATEWAY.fqdn)
    put_back = deploy(deploy_dir)
    assert put_back.returncode == 0, put_back.output[-4000:]
    assert "switch-over not needed" in put_back.output and "takes over" not in put_back.output, put_back.output[-4000:]
    assert "gateway verified" in put_back.output and main_pid() == before
    assert fab(tmp_path, "status").returncode == 0


def known_hosts(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(line)
    return path


def test_fab_refuses_a_host_whose_key_is_unknown_and_says_how_to_accept_it(first_deploy, tmp_path):
    empty = known_hosts(tmp_path, "")
    result = fab(tmp_path, "status", ssh_known_hosts_file=str(empty), ssh_strict_host_key_checking=None)
    assert result.returncode != 0
    line = row(result.stdout, TEST_GATEWAY.fqdn)
    assert "REFUSED" in line and f"host key of {TEST_GATEWAY.address}" in line and f"is not in {empty}" in line
    assert f"ssh-keyscan -t ssh-ed25519 {TEST_GATEWAY.address} >> {empty}" in line
    push = fab(tmp_path, "keys.push", ssh_known_hosts_file=str(empty), ssh_strict_host_key_checking=None)
    assert push.returncode != 0 and "REFUSED" in push.stderr  # the keys file was not sent


def test_fab_refuses_a_changed_host_key(first_deploy, tmp_path):
    other = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    recorded = known_hosts(tmp_path, f"{TEST_GATEWAY.address} {other.with_suffix('.pub').read_text().split()[0]} "
                                     f"{other.with_suffix('.pub').read_text().split()[1]}\n")
    for strict in (None, "accept-new", "yes"):
        result = fab(tmp_path, "status", ssh_known_hosts_file=str(recorded), ssh_strict_host_key_checking=strict)
        assert result.returncode != 0
        line = row(result.stdout, TEST_GATEWAY.fqdn)
        assert "REFUSED" in line and "CHANGED" in line and f"ssh-keygen -f {recorded} -R" in line, line


def test_fab_trusts_a_recorded_key_and_accept_new_records_one(first_deploy, tmp_path):
    scanned = subprocess.run(["ssh-keyscan", "-t", "ed25519", TEST_GATEWAY.address], capture_output=True,
                             text=True).stdout
    good = known_hosts(tmp_path, scanned)
    assert fab(tmp_path, "status", ssh_known_hosts_file=str(good), ssh_strict_host_key_checking=None).returncode == 0
    fresh = tmp_path / "fresh_known_hosts"
    result = fab(tmp_path, "status", ssh_known_hosts_file=str(fresh), ssh_strict_host_key_checking="accept-new")
    assert result.returncode == 0, result.stdout + result.stderr
    assert fresh.read_text().split() == scanned.split()  # recorded, the same key ssh-keyscan sees


def test_unreachable_host_is_named_and_the_others_still_reported(first_deploy, tmp_path):
    dead = gateway(29)
    result = fab(tmp_path, "status", hosts=(TEST_GATEWAY, dead))
    assert result.returncode != 0
    assert "UNREACHABLE" in row(result.stdout, dead.fqdn)
    alive = row(result.stdout, TEST_GATEWAY.fqdn).split()
    assert alive[1] == "active/running" and "healthy" in alive and alive[-1] == "none", alive


def test_logs_return_lines_the_service_wrote(first_deploy, readme_gateway, tmp_path):
    marker = f"fablogs{time.time_ns()}"
    client = openai.OpenAI(base_url=f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1", api_key=_key(), max_retries=0)
    client.models.list(extra_query={"marker": marker})
    time.sleep(1)
    journal = fab(tmp_path, "logs", "--grep", marker, "--lines", "20")
    assert journal.returncode == 0 and marker in journal.stdout, journal.stderr
    from_file = fab(tmp_path, "logs", "--file", "--grep", marker)
    assert from_file.returncode == 0 and marker in from_file.stdout, from_file.stderr
    several = fab(tmp_path, "logs", "--lines", "3", hosts=(TEST_GATEWAY, readme_gateway))
    assert several.returncode == 0 and len(several.stdout.splitlines()) == 6, several.stdout + several.stderr
    assert all(line.startswith((TEST_GATEWAY.fqdn + ": ", readme_gateway.fqdn + ": "))
               for line in several.stdout.splitlines())


def _key() -> str:
    return control.master_key()


def test_validate_passes_on_the_deployed_config(first_deploy, tmp_path):
    result = fab(tmp_path, "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "config OK" in row(result.stdout, TEST_GATEWAY.fqdn)


def test_health_lists_every_model_on_every_backend_and_what_each_backend_holds(first_deploy, tmp_path):
    result = fab(tmp_path, "health")
    assert result.returncode == 0, result.stdout + result.stderr
    for backend in BACKENDS:
        for model in backend.models:
            line = next(row for row in result.stdout.splitlines() if row.split()[:2] == [model, backend.name])
            assert "yes" in line
    # Per backend: the models it holds loaded and their GPU memory, as its own /api/ps says.
    held = result.stdout.split("MODELS LOADED", 1)[1].splitlines()
    for backend in BACKENDS:
        with urllib.request.urlopen(f"http://{backend.address}:{OLLAMA_PORT}/api/ps", timeout=5) as answer:
            loaded = json.loads(answer.read())["models"]
        line = next(row for row in held if row.split()[:1] == [backend.name]).split()
        assert line[1] == str(len(loaded)), held
        assert line[2:4] == [f"{sum(m['size_vram'] for m in loaded) / 2**30:.1f}", "GiB"], held
        assert all(m["name"] in " ".join(line) for m in loaded), held
    # With the GPUs' memory declared in the inventory, the use is shown of it.
    declared = {b.name: {"address": b.fqdn, "port": OLLAMA_PORT, "models": list(b.models), "gpu_memory_gib": 24}
                for b in BACKENDS}
    result = fab(tmp_path, "health", litellm_backends=declared)
    held = result.stdout.split("MODELS LOADED", 1)[1].splitlines()
    assert all(next(row for row in held if row.split()[:1] == [b.name]).split()[3:5] == ["of", "24"]
               for b in BACKENDS), held


def test_trial_makes_a_completion_and_leaves_the_service_alone(first_deploy, tmp_path):
    before = (main_pid(), service("NRestarts"))
    result = fab(tmp_path, "trial")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   completion with" in row(result.stdout, TEST_GATEWAY.fqdn)
    assert (main_pid(), service("NRestarts")) == before
    assert "litellm-trial" not in ssh("systemctl list-units --all --no-legend 'litellm-trial*'")


def test_restart_refuses_a_broken_config_and_the_service_keeps_serving(first_deploy, tmp_path, restore):
    before = main_pid()
    ssh("printf 'router_settings:\\n  health_check_interval: 60\\n' >> /etc/litellm/config.yaml")
    result = fab(tmp_path, "restart", hosts=(TEST_GATEWAY, gateway(1)))
    assert result.returncode != 0
    assert f"{TEST_GATEWAY.fqdn}: config is invalid" in result.stderr and "nothing changed" in result.stderr
    assert "not done: gw1.lab.test" in result.stderr  # the roll stopped at the first gateway
    assert main_pid() == before
    client = openai.OpenAI(base_url=f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1", api_key=_key(), max_retries=0)
    assert sorted(m.id for m in client.models.list().data) == sorted(MODELS)
    invalid = fab(tmp_path, "validate")
    assert invalid.returncode != 0 and "INVALID" in row(invalid.stdout, TEST_GATEWAY.fqdn)


def test_fab_dash_H_narrows_to_that_host(first_deploy, tmp_path):
    result = fab(tmp_path, "-H", TEST_GATEWAY.address, "status", hosts=(TEST_GATEWAY, gateway(1)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert TEST_GATEWAY.fqdn in result.stdout and "gw1.lab.test" not in result.stdout


def test_logs_follow_streams_new_lines(first_deploy, tmp_path):
    env = {**os.environ, "FABRIC_LITELLM_INVENTORY": str(inventory_file(tmp_path))}
    follower = subprocess.Popen([FAB, "logs", "--follow", "--lines", "0"], cwd=REPO, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    marker = f"follow{time.time_ns()}"
    client = openai.OpenAI(base_url=f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1", api_key=_key(),
                           max_retries=0)
    seen, done = [], threading.Event()

    def ask() -> None:  # again every 2 s: a line written before the follower connected is not new to it
        while not done.wait(2):
            client.models.list(extra_query={"marker": marker})

    def read() -> None:  # the follower's lines as they come (a read blocks: not in the test's own thread)
        for line in follower.stdout:
            seen.append(line)

    for work in (ask, read):
        threading.Thread(target=work, daemon=True).start()
    try:
        shown, _ = wait_until(lambda: any(marker in line for line in list(seen)), 60, 0.2)
        assert shown, "".join(seen)[-2000:]
    finally:
        done.set()
        follower.terminate()
        follower.wait(timeout=10)


# Commands the docs show that another test runs as written, under load or against the hosts they
# need (a fleet, the monitoring host): the test that does, by its node id.
RUN_ELSEWHERE = {
    "fab restart": "tests/lab/test_zero_downtime.py::test_fab_restart_under_load_loses_nothing",
    "fab rollback": "tests/lab/test_zero_downtime.py::"
                    "test_a_release_change_and_a_rollback_between_two_real_releases_lose_nothing",
    "fab trial": "tests/lab/test_fabfile.py::test_trial_makes_a_completion_and_leaves_the_service_alone",
    "fab drain GATEWAY": "tests/lab/test_fleet.py::"
                         "test_fab_status_shows_the_fleet_and_a_drain_holds_across_a_reload_until_undrain",
    "fab undrain GATEWAY": "tests/lab/test_fleet.py::"
                           "test_fab_status_shows_the_fleet_and_a_drain_holds_across_a_reload_until_undrain",
    "fab primary-off GATEWAY": "tests/lab/test_fleet.py::"
                               "test_the_primary_moves_off_a_gateway_before_its_maintenance_and_nothing_fails",
    "fab usage": "tests/lab/test_monitoring.py::test_fab_usage_shows_what_each_team_sent",
    "fab usage [--since 24h] [--json]": "tests/lab/test_monitoring.py::test_fab_usage_shows_what_each_team_sent",
}


def test_every_fab_command_the_docs_show_runs_as_written(first_deploy, tmp_path):
    """README, docs/ and the alerts' texts, each `fab ...` command with its placeholders filled in
    (tests/test_fab_commands_in_docs.py): a team of this run's own gets its key first, loses it last."""
    from tests.test_fab_commands_in_docs import PLACEHOLDERS, as_typed, runnable_commands

    values = {**PLACEHOLDERS, "T": f"docs-{time.time_ns() % 10**8}"}
    commands = [c for c in runnable_commands() if c not in RUN_ELSEWHERE]
    assert len(commands) >= 15 and "fab logs --since 15m" in commands, commands
    def failure(command: str) -> str | None:
        result = fab(tmp_path, *as_typed(command, values)[1:])
        return None if result.returncode == 0 else \
            f"{command}: exit {result.returncode}\n{result.stdout[-600:]}{result.stderr[-600:]}"

    # The key changes one after another (the team's key made first, revoked last); the rest only
    # read, so they run four at a time.
    keys = sorted((c for c in commands if "keys." in c),
                  key=lambda c: 0 if "keys.create" in c else 2 if "keys.revoke" in c else 1)
    with ThreadPoolExecutor(4) as pool:
        readers = list(pool.map(failure, [c for c in commands if "keys." not in c]))
    failed = [f for f in [*readers, *map(failure, keys)] if f]
    assert not failed, "\n\n".join(failed)
    for command, test in RUN_ELSEWHERE.items():
        path, name = test.split("::")
        source = (REPO / path).read_text()
        task = as_typed(command)[1]
        assert f"def {name}(" in source and f'"{task}"' in source, f"{command}: {test}"
