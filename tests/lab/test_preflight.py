"""Preflight against the lab's real DNS server and Ollama doubles, alone and as the deploy's first phase."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from gateway.preflight import EXIT_BACKENDS, EXIT_DNS, EXIT_DNS_TEMPORARY, EXIT_SETTINGS
from gateway.preflight import dns as dns_checks
from lab import control, machines
from lab.dns import DEAD_NAMESERVER
from lab.fleet import write_inventory
from lab.topology import BACKENDS, DNS_ADDRESS, MODELS
from tests.lab.conftest import REPO, TEST_GATEWAY, deploy, ssh, tree_digest

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def dns_cases(lab_ready):
    """The lab's DNS serves the cases (lab/dns.py: PREFLIGHT_RECORDS) once it is up."""
    control.refresh_dns()


def one(name: str, nameservers=(DNS_ADDRESS,), timeout: float = 2.0) -> dns_checks.DnsResult:
    results = dns_checks.check_fleet([name], list(nameservers), timeout)
    assert len(results) == 1, results
    return results[0]


def test_forward_confirmed_host_passes(dns_cases):
    result = one("llm1.lab.test")
    assert result.status == dns_checks.PASS and result.address == "127.0.10.21"


def test_missing_ptr(dns_cases):
    result = one("noptr.lab.test")
    assert result.status == dns_checks.NO_PTR and "127.0.10.61" in result.detail


def test_ptr_naming_another_host(dns_cases):
    result = one("alias.lab.test")
    assert result.status == dns_checks.PTR_OTHER_HOST and "real.lab.test" in result.detail


def test_ptr_name_resolving_to_another_address(dns_cases):
    result = one("fwd.lab.test")
    assert result.status == dns_checks.FORWARD_MISMATCH
    assert "moved.lab.test resolves to 127.0.10.64" in result.detail


def test_nxdomain(dns_cases):
    assert one("ghost.lab.test").status == dns_checks.NXDOMAIN


def test_servfail_is_a_temporary_failure_not_a_mismatch(dns_cases):
    assert one("x.broken.lab.test", timeout=3).status == dns_checks.TEMPFAIL


def test_dead_nameserver_costs_one_timeout_for_the_whole_fleet(dns_cases):
    names = [f"host{i}.lab.test" for i in range(10)]
    started = time.monotonic()
    results = dns_checks.check_fleet(names, [DEAD_NAMESERVER], timeout=2.0)
    elapsed = time.monotonic() - started
    assert [r.status for r in results] == [dns_checks.TEMPFAIL] * 10
    assert elapsed < 2.0 * 1.5, f"{elapsed:.1f} s for 10 names: lookups are not concurrent"


def checks_cli(tmp_path, *args: str, **overrides) -> subprocess.CompletedProcess:
    inventory = write_inventory(tmp_path / "inventory.py", [TEST_GATEWAY], **overrides)
    return subprocess.run([sys.executable, "-m", "checks", str(inventory), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_passes_on_the_healthy_lab(lab_ready, tmp_path):
    result = checks_cli(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "preflight passed" in result.stdout
    assert f"{TEST_GATEWAY.fqdn}" in result.stdout and "backend models" in result.stdout


def test_cli_exit_codes_tell_failure_classes_apart(dns_cases, tmp_path):
    bad_settings = checks_cli(tmp_path, litellm_port=0)
    assert bad_settings.returncode == EXIT_SETTINGS and "litellm_port" in bad_settings.stderr

    dead = checks_cli(tmp_path, "--skip", "backends", litellm_dns_nameservers=[DEAD_NAMESERVER])
    assert dead.returncode == EXIT_DNS_TEMPORARY, dead.stdout
    assert "TEMPORARY-FAILURE" in dead.stdout and "MISMATCH" not in dead.stdout
    assert "SKIPPED" in dead.stdout and "SKIPPED" in dead.stderr

    backends = {b.name: {"address": b.fqdn, "port": 11434, "models": list(b.models)} for b in BACKENDS}
    backends["stray"] = {"address": "noptr.lab.test", "port": 11434, "models": ["phi3-3.8b"]}
    both = checks_cli(tmp_path, "--json", litellm_backends=backends)
    report = json.loads(both.stdout)
    assert both.returncode == EXIT_DNS | EXIT_BACKENDS == report["exit_code"]
    assert any(r["host"] == "noptr.lab.test" and r["status"] == "no-ptr" for r in report["dns"])
    assert any(r["backend"] == "stray" and r["check"] == "tcp" and not r["ok"] for r in report["backends"])


@pytest.fixture
def llm2_without_mistral(lab_ready):
    llm2 = BACKENDS[1]
    models = json.loads((llm2.root / "etc/ollama-double.json").read_text())["models"]
    with machines.double_behaviour(llm2, models=[t for t in models if t != MODELS["mistral-7b"]["tag"]]):
        yield llm2


def test_backend_lacking_a_model_is_named_with_the_fix(llm2_without_mistral, tmp_path):
    result = checks_cli(tmp_path)
    assert result.returncode == EXIT_BACKENDS
    line = next(row for row in result.stdout.splitlines() if row.startswith("llm2") and "backend models" in row)
    assert "missing mistral:7b" in line and "ollama pull mistral:7b" in line


def test_deploy_stops_before_any_change_when_preflight_fails(first_deploy, llm2_without_mistral, deploy_dir):
    before = tree_digest()
    result = deploy(deploy_dir, litellm_timeout=44)  # would change the config if it went ahead
    assert result.returncode != 0
    assert "ollama pull mistral:7b" in result.output
    assert "preflight failed" in result.output and "Nothing was changed on any host" in result.output
    # The outcome, not a log line: the config (timeout 44) and every other managed file are as before.
    assert tree_digest() == before
    assert "timeout: 44" not in ssh("cat /etc/litellm/config.yaml")


def test_skipping_a_check_class_is_explicit_and_loud(first_deploy, llm2_without_mistral, deploy_dir):
    result = deploy(deploy_dir, litellm_preflight_skip=["backends"])
    assert result.returncode == 0, result.output[-3000:]
    assert "PREFLIGHT BACKENDS CHECKS SKIPPED" in result.output
    assert "backends checks were skipped on purpose" in result.output
