"""The gateway's metrics on a real gateway: LiteLLM's Prometheus callback behind the front's metrics
port, scraped as Prometheus scrapes it (its bearer token)."""
from __future__ import annotations

import hashlib
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from gateway.services.metrics import FRONT_PATH, instance_path
from lab import control
from lab.fleet import METRICS_TOKEN_FILE
from lab.topology import GATEWAY_PORT
from on_host.deadline import wait_until
from tests.lab.conftest import TEST_GATEWAY, serving, ssh
from tests.lab.test_fabfile import fab

pytestmark = pytest.mark.lab
METRICS = f"http://{TEST_GATEWAY.address}:9400"
TEAM = "metrics-team"
SENT = 24


def get(url: str, authorization: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def token() -> str:
    return METRICS_TOKEN_FILE.read_text().strip()


def scrape(port: int) -> str:
    status, body = get(METRICS + instance_path(port), f"Bearer {token()}")
    assert status == 200, (status, body[:500])
    return body


def total(body: str, metric: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include these."""
    found = 0.0
    for line in body.splitlines():
        if not line.startswith(metric + "{"):
            continue
        shown = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(shown.get(k) == v for k, v in labels.items()):
            found += float(line.rsplit(" ", 1)[1])
    return found


@pytest.fixture(scope="module")
def team_key(first_deploy, tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("metrics")
    fab(tmp, "keys.revoke", "--team", TEAM)  # an earlier run's key, if any (the lab's keys file persists)
    result = fab(tmp, "keys.create", "--team", TEAM, "--rpm", "1000")
    assert result.returncode == 0, result.stdout + result.stderr
    return re.search(r"sk-[0-9a-f]{64}", result.stdout).group(0)


@pytest.fixture(scope="module")
def sent(team_key) -> dict:
    """SENT completions with the team key, 8 at a time (so both workers take some), then one scrape."""
    port = int(serving().split("@")[1].split(".")[0])
    before = total(scrape(port), "litellm_proxy_total_requests_metric_total", team=TEAM)
    sdk = openai.OpenAI(base_url=f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1", api_key=team_key, max_retries=0)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: sdk.chat.completions.create(
            model="phi3-3.8b", messages=[{"role": "user", "content": "hi"}], max_tokens=8), range(SENT)))
    # The callback counts after the answer went out.
    _, body = wait_until(lambda: scrape(port), 20, 1,
                         good=lambda body: total(body, "litellm_proxy_total_requests_metric_total",
                                                 team=TEAM) >= before + SENT)
    return {"port": port, "before": before, "body": body}


def test_one_scrape_counts_every_workers_requests_per_team_model_and_deployment(sent):
    body, before = sent["body"], sent["before"]
    assert total(body, "litellm_proxy_total_requests_metric_total", team=TEAM) == before + SENT
    assert total(body, "litellm_input_tokens_metric_total", team=TEAM, requested_model="phi3-3.8b") > 0
    assert total(body, "litellm_output_tokens_metric_total", team=TEAM, requested_model="phi3-3.8b") > 0
    # Per deployment: phi3-3.8b is served by both backends; every request landed on one of them.
    per_backend = {backend: total(body, "litellm_deployment_success_responses_total", model_id=f"phi3-3.8b@{backend}")
                   for backend in ("llm1", "llm2")}
    assert sum(per_backend.values()) >= SENT, per_backend
    assert "litellm_request_total_latency_metric_bucket" in body
    # More than one worker wrote samples (one file per process in the instance's own /tmp), and the
    # one scrape above summed them all.
    files = ssh(f"ls /tmp/systemd-private-*-litellm@{sent['port']}.service-*/tmp/litellm_prometheus_multiproc/")
    assert len({name.rsplit("_", 1)[1] for name in files.split() if name.startswith("counter_")}) >= 2, files


def test_no_key_nor_its_hash_is_among_the_labels(sent, team_key):
    body = sent["body"]
    master = control.master_key()
    for secret in (team_key, master, hashlib.sha256(team_key.encode()).hexdigest(),
                   hashlib.sha256(master.encode()).hexdigest()):
        assert secret not in body
    assert "hashed_api_key" not in body and "api_key_alias" not in body
    assert f'team="{TEAM}"' in body


def test_metrics_answer_the_scrape_token_only_and_never_on_the_public_port(sent):
    port = sent["port"]
    assert get(METRICS + instance_path(port))[0] == 401
    assert get(METRICS + instance_path(port), f"Bearer {control.master_key()}")[0] == 401
    assert get(METRICS + instance_path(port), f"Bearer {token()}x")[0] == 401
    for path in ("/metrics", "/metrics/"):
        assert get(f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}{path}", f"Bearer {control.master_key()}")[0] == 404
    status, front = get(METRICS + FRONT_PATH, f"Bearer {token()}")
    assert status == 200 and "haproxy_backend_active_servers" in front
    # The slot with no instance running answers an empty scrape, not an error.
    idle = next(p for p in (4001, 4002) if p != port)
    status, body = get(METRICS + instance_path(idle), f"Bearer {token()}")
    assert status == 200 and "litellm_" not in body
