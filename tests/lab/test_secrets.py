"""The master key: never in pyinfra's output, the journal or a log; generated once on the host and kept.

On gw3, a gateway of the tests' second process (tests/conftest.py): the master key changes four
times here, each a switch-over, beside gw2's tests rather than after them.
"""
from __future__ import annotations

import functools
import re
import subprocess

import openai
import pytest

from lab import control
from lab.topology import GATEWAY_PORT, gateway
from tests.lab import conftest
from tests.lab.conftest import REPO

pytestmark = pytest.mark.lab
HOST = gateway(3)
deploy = functools.partial(conftest.deploy, hosts=[HOST])
ssh = functools.partial(conftest.ssh, host=HOST)


@pytest.fixture(scope="module")
def own_gateway(lab_up, deploy_dir):
    control.ensure_extra_host(HOST)
    result = deploy(deploy_dir)
    assert result.returncode == 0, result.output[-4000:]
    return f"http://{HOST.address}:{GATEWAY_PORT}/v1"


@pytest.fixture
def restore(own_gateway, deploy_dir):
    """gw3 back on the lab's own settings (its master key) after a test that deployed others."""
    yield
    result = deploy(deploy_dir)
    assert result.returncode == 0, result.output[-4000:]

# Recognisable fake keys: if either shows up anywhere but the env file, a secret leaked.
CANARY_A = "sk-canary" + "a1b2c3d4e5f60718" * 4
CANARY_B = "sk-canary" + "f0e1d2c3b4a59687" * 4
READ_KEY = "sed -n 's/^LITELLM_MASTER_KEY=//p' /etc/litellm/litellm.env"


def _leaks(canary: str) -> list[str]:
    """Every place on the gateway host, other than the env file, that holds the canary."""
    places = ssh(
        f"grep -rlF -- {canary} /etc /var/log /var/lib/litellm /tmp /run /root 2>/dev/null "
        "| grep -vx /etc/litellm/litellm.env; true"
    ).split()
    if canary in ssh("journalctl --no-pager -o cat"):
        places.append("journal")
    return places


def test_canary_key_never_appears_in_any_output_mode_the_journal_or_logs(own_gateway, deploy_dir, restore):
    runs = [
        (CANARY_A, ()),
        (CANARY_B, ("-v",)),
        (CANARY_A, ("-vv", "--diff")),
        (CANARY_B, ("--debug",)),
    ]
    for canary, flags in runs:
        result = deploy(deploy_dir, *flags, litellm_master_key=canary)
        assert result.returncode == 0, result.output[-4000:]
        assert result.changes > 0  # the key really changed, so every mode saw it being written
        for key in (CANARY_A, CANARY_B):
            assert key not in result.output, f"master key printed by pyinfra {' '.join(flags) or '(normal)'}"
            assert "canary" not in result.output
    # The last key really is deployed: the gateway accepts it.
    models = openai.OpenAI(base_url=own_gateway, api_key=CANARY_B, max_retries=0).models.list()
    assert models.data
    assert ssh("stat -c '%a %U %G' /etc/litellm/litellm.env").strip() == "600 root root"
    # The search itself works: unfiltered, it finds the deployed key where it belongs.
    assert ssh(f"grep -rlF -- {CANARY_B} /etc /var/log /var/lib/litellm /tmp /run /root 2>/dev/null; true").split() == [
        "/etc/litellm/litellm.env"]
    for key in (CANARY_A, CANARY_B):
        assert _leaks(key) == []
    assert ssh("ls /tmp/pyinfra-* 2>/dev/null; true").strip() == ""  # no upload left behind

def test_the_lab_master_key_is_not_in_the_repository(lab_up):
    found = subprocess.run(["git", "grep", "-lF", control.master_key()], cwd=REPO, capture_output=True, text=True)
    assert found.returncode == 1 and found.stdout == ""  # 1: no match anywhere in the tracked files


def test_key_is_generated_on_the_host_once_and_kept(own_gateway, deploy_dir, restore):
    ssh("rm -f /etc/litellm/litellm.env")
    first = deploy(deploy_dir, litellm_master_key=None)
    assert first.returncode == 0, first.output[-4000:]
    assert "gateway verified" in first.output
    key = ssh(READ_KEY).strip()
    assert re.fullmatch(r"sk-[0-9a-f]{64}", key)
    assert key not in first.output

    again = deploy(deploy_dir, litellm_master_key=None)
    assert again.returncode == 0 and again.changes == 0, again.output[-4000:]
    assert ssh(READ_KEY).strip() == key

    # A weak key left on the host (the seed's placeholder) is replaced, never kept.
    ssh("sed -i 's/^LITELLM_MASTER_KEY=.*/LITELLM_MASTER_KEY=sk-1234567890abcdef-test-key-please-replace/' "
        "/etc/litellm/litellm.env")
    replaced = deploy(deploy_dir, litellm_master_key=None)
    assert replaced.returncode == 0, replaced.output[-4000:]
    new_key = ssh(READ_KEY).strip()
    assert re.fullmatch(r"sk-[0-9a-f]{64}", new_key) and new_key != key
    assert new_key not in replaced.output
