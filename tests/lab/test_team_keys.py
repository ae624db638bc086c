"""Team API keys with per-key limits, managed with fab, enforced by the real proxy, used with the OpenAI SDK."""
from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from lab import machines
from lab.topology import BACKENDS, GATEWAY_PORT, gateway
from tests.lab.conftest import TEST_GATEWAY, deploy, service, ssh
from tests.lab.test_fabfile import fab as run_fab

pytestmark = pytest.mark.lab
URL = f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1"
SLOW_MODEL = "llama3-8b"  # served by llm1 only, so slowing llm1 slows every call to it


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory, first_deploy):
    return tmp_path_factory.mktemp("team-keys") / "team-keys.json"


@pytest.fixture(scope="module")
def fleet(keys_file, tmp_path_factory):
    """Deploy gw2 with a team keys file of the tests' own; fab then works on that fleet."""
    tmp = tmp_path_factory.mktemp("fleet")
    result = deploy(tmp, litellm_team_keys_file=str(keys_file))
    assert result.returncode == 0, result.output[-3000:]

    def fab(*args: str):
        return run_fab(tmp, *args, litellm_team_keys_file=str(keys_file))

    fab.deploy = lambda: deploy(tmp, litellm_team_keys_file=str(keys_file))
    yield fab
    deploy(tmp)  # back to the lab's own keys file


SHOWN: list[str] = []  # every key a task showed, to search for afterwards


def create(fab, team: str, *flags: str) -> str:
    result = fab("keys.create", "--team", team, *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    key = re.search(r"sk-[0-9a-f]{64}", result.stdout).group(0)
    SHOWN.append(key)
    return key


def client(key: str, timeout: float = 60) -> openai.OpenAI:
    return openai.OpenAI(base_url=URL, api_key=key, max_retries=0, timeout=timeout)


def chat(key: str, model: str = "phi3-3.8b", **kwargs):
    return client(key).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], **kwargs)


def slow_backend(delay: float):
    return machines.double_behaviour(BACKENDS[0], token_delay=delay)


def test_created_key_works_and_only_its_hash_is_kept(fleet, keys_file):
    key = create(fleet, "alpha")
    assert chat(key).choices[0].message.content
    listed = fleet("keys.list")
    line = next(row for row in listed.stdout.splitlines() if row.startswith("alpha"))
    assert line.split()[1:5] == ["60", "10", "2048", "30"]  # the seed's limits by default
    assert key not in listed.stdout
    assert key not in keys_file.read_text() and (keys_file.stat().st_mode & 0o777) == 0o600
    host_copy = ssh("cat /etc/litellm/team-keys.json")
    assert key not in host_copy and "alpha" in host_copy
    assert ssh("stat -c '%a %U %G' /etc/litellm/team-keys.json").strip() == "640 root litellm"


def test_unknown_key_is_401_and_team_keys_cannot_manage_the_proxy(fleet):
    with pytest.raises(openai.AuthenticationError):
        chat("sk-" + "1" * 64)
    key = create(fleet, "bravo")
    with pytest.raises(openai.NotFoundError):  # the front lets no management route through (test_edge.py)
        client(key).get("/model/info", cast_to=object)


def test_61st_request_in_a_minute_is_rate_limited(fleet):
    key = create(fleet, "charlie")
    for _ in range(60):
        chat(key, max_tokens=3)
    with pytest.raises(openai.RateLimitError) as caught:
        chat(key, max_tokens=3)
    assert int(caught.value.response.headers["retry-after"]) > 0


def test_a_rate_limit_holds_across_every_worker_of_the_gateway(fleet):
    # The lab hosts have 2 CPUs, so the default "auto" runs 2 workers; each new connection may land
    # on either. Without the shared Redis each worker counted on its own (19 of 20 got through).
    assert "--num_workers 2" in service("ExecStart")
    key = create(fleet, "lima", "--rpm", "10")

    def one(_):
        try:
            chat(key, max_tokens=3)
            return "ok"
        except openai.RateLimitError:
            return "429"

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(one, range(20)))
    assert outcomes.count("ok") == 10 and outcomes.count("429") == 10, outcomes


def test_11_concurrent_requests_meet_the_concurrency_limit(fleet):
    key = create(fleet, "delta")

    def one(_):
        try:
            chat(key, model=SLOW_MODEL)
            return "ok"
        except openai.RateLimitError:
            return "429"

    with slow_backend(0.25), ThreadPoolExecutor(max_workers=11) as pool:
        outcomes = sorted(pool.map(one, range(11)))
    assert outcomes == ["429"] + ["ok"] * 10


def test_asking_for_more_than_the_keys_max_tokens_is_refused(fleet):
    key = create(fleet, "echo", "--max-tokens", "100")
    with pytest.raises(openai.BadRequestError) as caught:
        chat(key, max_tokens=101)
    assert "limit of 100 tokens" in str(caught.value)
    assert chat(key, max_tokens=100).choices[0].message.content


def test_requests_time_out_at_the_keys_timeout(fleet):
    key = create(fleet, "foxtrot", "--timeout", "2")
    started = time.monotonic()
    with slow_backend(1.0), pytest.raises(openai.APIStatusError) as caught:
        client(key, timeout=120).chat.completions.create(model=SLOW_MODEL, messages=[{"role": "user", "content": "hi"}])
    elapsed = time.monotonic() - started
    assert caught.value.status_code in (408, 504) and "timeout" in str(caught.value).lower(), caught.value
    assert 2 <= elapsed < 12, f"took {elapsed:.1f} s: the key's 2 s timeout (with the router's retries) was not applied"


def test_revoked_key_is_refused_right_after_the_task_returns(fleet):
    key = create(fleet, "golf")
    assert chat(key).choices
    result = fleet("keys.revoke", "--team", "golf")
    assert result.returncode == 0, result.stderr
    with pytest.raises(openai.AuthenticationError):
        chat(key)


def test_rotated_key_replaces_the_old_one(fleet):
    old = create(fleet, "hotel")
    result = fleet("keys.rotate", "--team", "hotel")
    assert result.returncode == 0, result.stderr
    new = re.search(r"sk-[0-9a-f]{64}", result.stdout).group(0)
    SHOWN.append(new)
    with pytest.raises(openai.AuthenticationError):
        chat(old)
    assert chat(new).choices


def test_a_teams_limits_change_and_its_key_stays(fleet):
    slower, shorter = create(fleet, "mike"), create(fleet, "mike-short")
    changed = fleet("keys.limits", "--team", "mike", "--rpm", "2")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "team mike: rpm 2, max_parallel 10, max_tokens 2048, timeout 30 (same key)" in changed.stdout
    assert not re.search(r"sk-[0-9a-f]{64}", changed.stdout)  # no key shown: it did not change
    chat(slower, max_tokens=3)
    chat(slower, max_tokens=3)
    with pytest.raises(openai.RateLimitError):  # the third of the minute passes the new rpm
        chat(slower, max_tokens=3)
    assert fleet("keys.limits", "--team", "mike-short", "--max-tokens", "5").returncode == 0
    with pytest.raises(openai.BadRequestError):  # over the new max_tokens: refused before any backend
        chat(shorter, max_tokens=6)
    assert chat(shorter, max_tokens=5).choices
    rows = {r.split()[0]: r.split()[1:5] for r in fleet("keys.list").stdout.splitlines()[1:] if r.strip()}
    assert rows["mike"] == ["2", "10", "2048", "30"] and rows["mike-short"] == ["60", "10", "5", "30"]


def test_redeploy_neither_loses_nor_resurrects_keys(fleet):
    kept = create(fleet, "india")
    gone = create(fleet, "juliet")
    assert fleet("keys.revoke", "--team", "juliet").returncode == 0
    again = fleet.deploy()
    assert again.returncode == 0 and again.changes == 0, again.output[-3000:]
    assert chat(kept).choices
    with pytest.raises(openai.AuthenticationError):
        chat(gone)


def test_a_change_with_a_gateway_down_says_which_and_how_to_catch_up(fleet, keys_file, tmp_path):
    result = run_fab(tmp_path, "keys.create", "--team", "kilo", hosts=(TEST_GATEWAY, gateway(29)),
                     litellm_team_keys_file=str(keys_file))
    assert result.returncode != 0
    key = re.search(r"sk-[0-9a-f]{64}", result.stdout).group(0)
    SHOWN.append(key)
    assert "gw29.lab.test: NOT updated" in result.stderr and "fab keys.push" in result.stderr
    assert chat(key).choices  # the reachable gateway has it
    assert fleet("keys.push").returncode == 0


def test_no_key_is_kept_or_logged_in_clear(fleet, keys_file):
    assert SHOWN, "the tests above made keys"
    journal = ssh("journalctl --no-pager -o cat")
    logs = ssh("cat /var/log/litellm/*.log")
    files = ssh("cat /etc/litellm/config.yaml /etc/litellm/team-keys.json /etc/litellm/logging.json")
    for key in SHOWN:
        for where, text in (("journal", journal), ("log files", logs), ("config files", files),
                            ("keys file", keys_file.read_text())):
            assert key not in text, f"a team key is in the {where}"
