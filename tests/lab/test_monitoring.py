"""The monitoring host for real: Prometheus, Alertmanager, the blackbox and node exporters from Debian's
packages on mon1, watching gw2 and its backends; alerts fire and resolve, and reach the lab's webhook."""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from gateway.monitoring.auth import OPERATOR, SCRAPER, authorization, scraper_password
from lab import alert_sink, control, machines
from lab.fleet import FLEET_CA_DIR, METRICS_TOKEN_FILE, MONITORING_PASSWORD_FILE, monitoring_urls
from lab.topology import BACKENDS, GATEWAY_PORT, MODELS, MONITORING_HOST, OLLAMA_PORT, TEST_GATEWAY
from tests.lab.conftest import REPO, deploy, monitoring_host_held, ssh, wait_for
from tests.lab.test_fabfile import fab

pytestmark = pytest.mark.lab
INTERVAL, DOWN_FOR = 5, 20  # the lab's: seconds between scrapes (and rule evaluations), and `for:` of the down alerts
FAST = {"monitoring_scrape_interval": INTERVAL, "monitoring_thresholds": {"down_for": DOWN_FOR}}
PROMETHEUS = monitoring_urls()["prometheus_url"]
TEAM = f"monitored-{secrets.token_hex(3)}"  # a team of this run's own: Prometheus keeps earlier runs' samples
SENT = 20


def get(url: str, user: str | None = OPERATOR, data: bytes | None = None):
    """The answer to a request logged in as `user` (None: no login; "guess": a wrong password); an HTTP
    error's status is the answer's too. Callers name the user, never a password: none reaches a report."""
    password = MONITORING_PASSWORD_FILE.read_text().strip()
    passwords = {OPERATOR: password, SCRAPER: scraper_password(password), "guess": "guessed"}
    headers = {"Content-Type": "application/json"}
    if user:
        headers["Authorization"] = authorization(OPERATOR if user == "guess" else user, passwords[user])
    # HTTPS (monitoring_tls) is served from the lab's own CA, the fleet's.
    context = ssl.create_default_context(cafile=str(FLEET_CA_DIR / "ca.crt")) if url.startswith("https:") else None
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers, data=data), timeout=10,
                                      context=context)
    except urllib.error.HTTPError as error:
        return error


def api(path: str, prometheus: str = PROMETHEUS, **params: str) -> dict:
    url = f"{prometheus}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with get(url) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return body["data"]


def probes_succeed(targets: list[dict], prometheus: str = PROMETHEUS) -> bool:
    """Every probe of the active targets succeeded at its last scrape. Series of targets the config
    no longer has are left out: after a restart of Prometheus (no staleness marks then), their last
    samples would count for five minutes."""
    active = {(t["labels"]["job"], t["labels"]["instance"]) for t in targets}
    found = {(r["metric"]["job"], r["metric"]["instance"]): float(r["value"][1])
             for r in api("query", prometheus, query="probe_success")["result"]}
    probed = {key: found.get(key) for key in active if key[0] not in ("litellm", "litellm-front", "node")}
    return bool(probed) and all(result == 1 for result in probed.values())


def value(query: str, prometheus: str = PROMETHEUS) -> float:
    result = api("query", prometheus, query=query)["result"]
    return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture(scope="module")
def monitored(first_deploy, deploy_dir):
    """mon1 deployed watching gw2 (the lab's fast scrape and alert delays), gw2 with its node exporter;
    mon1 is this module's until its last test."""
    with monitoring_host_held():
        control.ensure_monitoring()
        result = deploy(deploy_dir, monitoring=FAST)
        assert result.returncode == 0, result.output[-6000:]
        yield result


def test_the_deploy_shows_no_token_and_a_second_one_changes_nothing(monitored, deploy_dir):
    token = METRICS_TOKEN_FILE.read_text().strip()
    password = MONITORING_PASSWORD_FILE.read_text().strip()
    assert token not in monitored.output and password not in monitored.output
    assert scraper_password(password) not in monitored.output
    again = deploy(deploy_dir, monitoring=FAST)
    assert again.returncode == 0 and again.changes == 0, again.output[-4000:]
    # Only Prometheus reads the token there.
    assert machines.ssh(MONITORING_HOST, "stat -c '%U %G %a' /etc/litellm-monitoring/metrics.token").stdout.split() == \
        ["root", "prometheus", "640"]


def test_lab_status_names_the_monitoring_urls(monitored):
    report = json.loads(subprocess.run([sys.executable, "-m", "lab", "status", "--json"], cwd=REPO, check=True,
                                       capture_output=True, text=True).stdout)
    urls = report["monitoring"]
    with get(urls["prometheus_url"] + "/-/ready") as answer:
        assert answer.status == 200
    with get(urls["alertmanager_url"] + "/api/v2/status") as answer:
        assert json.load(answer)["config"]["original"].count(alert_sink.URL) == 1


def test_every_instance_front_host_backend_model_and_readiness_is_scraped(monitored):
    expected = {"litellm": 2, "litellm-front": 1, "node": 2, "gateway-readiness": 1, "ollama-version": len(BACKENDS),
                "ollama-models": sum(len(b.models) for b in BACKENDS)}

    def all_up():
        targets = api("targets")["activeTargets"]
        jobs = {}
        for target in targets:
            jobs[target["labels"]["job"]] = jobs.get(target["labels"]["job"], 0) + 1
        healthy = all(t["health"] == "up" for t in targets) and probes_succeed(targets)
        return jobs if healthy and jobs == expected else None

    wait_for(all_up, 60, "every target up and every probe succeeding", interval=1)
    models = {r["metric"]["model"] for r in api("query", query='probe_success{job="ollama-models"}')["result"]}
    assert models == {MODELS[m]["tag"] for b in BACKENDS for m in b.models}


def test_prometheus_alertmanager_and_node_exporters_let_in_only_their_logins(monitored):
    """From outside (the control machine): without a login, with a wrong one, with the operators' and Prometheus'."""
    urls = monitoring_urls()
    node = f"http://{TEST_GATEWAY.address}:9100/metrics"
    silence = json.dumps({"matchers": [{"name": "alertname", "value": "GatewayNotReady", "isRegex": False}],
                          "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T00:01:00Z",
                          "createdBy": "outsider", "comment": "probe"}).encode()
    # The blackbox exporter fetches any URL it is given.
    probe = (f"http://{MONITORING_HOST.address}:9115/probe?module=ollama_version&target="
             + urllib.parse.quote(f"http://{BACKENDS[0].address}:{OLLAMA_PORT}/api/version"))
    for user in (None, "guess"):
        assert get(f"{urls['prometheus_url']}/api/v1/query?query=up", user).status == 401
        assert get(f"{urls['prometheus_url']}/graph", user).status == 401
        assert get(f"{urls['alertmanager_url']}/api/v2/silences", user, data=silence).status == 401
        assert get(node, user).status == 401
        assert get(probe, user).status == 401
    # The operators read Prometheus and Alertmanager; the node exporters let only Prometheus in.
    assert get(f"{urls['prometheus_url']}/api/v1/query?query=up").status == 200
    assert get(f"{urls['alertmanager_url']}/api/v2/alerts").status == 200
    assert get(node).status == 401
    with get(node, SCRAPER) as answer:
        assert answer.status == 200 and b"node_memory_MemAvailable_bytes" in answer.read()
    with get(probe, SCRAPER) as answer:
        assert answer.status == 200 and b"probe_success 1" in answer.read()


@pytest.fixture(scope="module")
def team_key(monitored, tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("monitoring")
    made = fab(tmp, "keys.create", "--team", TEAM, "--rpm", "1000")
    assert made.returncode == 0, made.stdout + made.stderr
    yield re.search(r"sk-[0-9a-f]{64}", made.stdout).group(0)
    fab(tmp, "keys.revoke", "--team", TEAM)


def test_prometheus_counts_every_request_of_every_worker_per_team(team_key):
    query = f'sum(litellm_proxy_total_requests_metric_total{{team="{TEAM}"}})'
    before = value(query)
    sdk = openai.OpenAI(base_url=f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1", api_key=team_key, max_retries=0)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: sdk.chat.completions.create(
            model="phi3-3.8b", messages=[{"role": "user", "content": "hi"}], max_tokens=8), range(SENT)))
    wait_for(lambda: value(query) >= before + SENT, 30, f"{SENT} more requests of {TEAM} in Prometheus", interval=1)
    time.sleep(2 * INTERVAL)  # and not more, a few scrapes later
    assert value(query) == before + SENT
    assert value(f'sum(litellm_output_tokens_metric_total{{team="{TEAM}"}})') > 0


def test_fab_usage_shows_what_each_team_sent(team_key, tmp_path):
    """The team is new: within the last hour it sent exactly SENT requests, which `fab usage` counts from
    the samples (increase() would miss its counters' first scrape)."""
    result = fab(tmp_path, "usage", "--since", "1h", "--json", monitoring=FAST)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    mine = report["teams"][TEAM]
    assert mine["requests"] == SENT and mine["errors"] == 0 and mine["limited_429"] == 0, mine
    assert mine["tokens_out"] > 0 and mine["graph"].startswith(PROMETHEUS + "/graph?")
    table = fab(tmp_path, "usage", monitoring=FAST)
    assert table.returncode == 0 and TEAM in table.stdout and "TOKENS IN" in table.stdout
    refused = fab(tmp_path, "usage", "--since", "yesterday", monitoring=FAST)
    assert refused.returncode == 2 and "--since 'yesterday' is not a duration" in refused.stderr
    alone = fab(tmp_path, "usage")  # an inventory without a monitoring host
    assert alone.returncode == 2 and "no monitoring host" in alone.stderr


def test_no_key_nor_token_is_in_any_label(team_key):
    labels = set(api("labels"))
    assert not labels & {"hashed_api_key", "api_key_alias", "user", "user_email", "end_user", "client_ip"}
    assert "team" in labels
    hidden = [team_key, control.master_key(), control.fleet_key(), METRICS_TOKEN_FILE.read_text().strip()]
    hidden += [hashlib.sha256(h.encode()).hexdigest() for h in hidden]
    for name in labels:
        values = "\n".join(api(f"label/{name}/values"))
        assert not [h for h in hidden if h in values], name


def firing(name: str, **labels: str) -> dict | None:
    for alert in api("alerts")["alerts"]:
        if (alert["labels"]["alertname"] == name and alert["state"] == "firing"
                and all(alert["labels"].get(k) == v for k, v in labels.items())):
            return alert
    return None


def notified(name: str, status: str, since: float) -> dict | None:
    for notification in alert_sink.received():
        if notification["at"] < since:
            continue
        for alert in notification["alerts"]:
            if alert["labels"]["alertname"] == name and alert["status"] == status:
                return notification
    return None


def test_a_stopped_backend_a_lost_model_a_stopped_front_and_rate_limit_store_fire_and_resolve(monitored, tmp_path):
    """Four faults at once: llm2's Ollama stopped, a model gone from llm1's tags, gw2's front and its
    rate-limit Redis stopped (GatewayMetricsDown fires too: the front serves the scrapes).
    Each alert fires in Prometheus within `for:` and a few scrape intervals, reaches the webhook, and
    resolves (in Prometheus and at the webhook) once the fault is mended."""
    llm1, llm2 = BACKENDS
    lost = MODELS[llm1.models[1]]["tag"]
    models = json.loads((llm1.root / "etc/ollama-double.json").read_text())["models"]
    expected = {"BackendDown": {"backend": llm2.name}, "ModelMissing": {"backend": llm1.name, "model": lost},
                "GatewayNotReady": {"gateway": TEST_GATEWAY.fqdn}, "RateLimitStoreDown": {"host": TEST_GATEWAY.fqdn}}
    wait_for(lambda: not any(firing(n, **labels) for n, labels in expected.items()), 60,
             "no alert firing before the faults", interval=1)
    started = time.time()
    t0 = time.monotonic()
    with contextlib.ExitStack() as faults:  # llm1 lacking a model until the end
        try:
            machines.ssh(llm2, "systemctl stop ollama")
            faults.enter_context(machines.double_behaviour(llm1, models=[t for t in models if t != lost]))
            ssh("systemctl stop litellm-front litellm-redis")
            fired = first_seen(lambda name, labels: firing(name, **labels), expected, DOWN_FOR + 10 * INTERVAL,
                               since=t0)
            for name in expected:
                wait_for(lambda name=name: notified(name, "firing", started), 90, f"{name} at the webhook",
                         interval=1)
            status = fab(tmp_path, "status", monitoring=FAST)
            assert status.returncode == 1 and all(name in status.stdout for name in expected), \
                status.stdout[-3000:]
        finally:
            ssh("systemctl start litellm-redis litellm-front")
            machines.ssh(llm2, "systemctl start ollama")
    resolved = first_seen(lambda name, labels: not firing(name, **labels), expected, 10 * INTERVAL)
    for name in expected:
        wait_for(lambda name=name: notified(name, "resolved", started), 90, f"{name} resolved at the webhook",
                 interval=1)
    print(f"\nfiring after (s): {fired}; resolved after (s): {resolved} "
          f"(for: {DOWN_FOR} s, scrape interval {INTERVAL} s)")
    # What a fault costs before someone is told: the rule's `for:` plus the scrape and evaluation that see it.
    assert max(fired.values()) <= DOWN_FOR + 3 * INTERVAL, fired


def first_seen(check, expected: dict, timeout: float, since: float | None = None) -> dict[str, float]:
    """Seconds (from `since`, a time.monotonic(); default now) until check(name, labels) first held, for
    every expected alert, watched together."""
    start = time.monotonic() if since is None else since
    seen: dict[str, float] = {}
    while len(seen) < len(expected):
        for name, labels in expected.items():
            if name not in seen and check(name, labels):
                seen[name] = round(time.monotonic() - start, 1)
        assert time.monotonic() - start < timeout, f"within {timeout} s only {seen} of {list(expected)}"
        time.sleep(0.5)
    return seen


def test_without_a_monitoring_group_no_node_exporter_is_left(monitored, deploy_dir):
    """Last: gw2 deployed from an inventory without the monitoring host (as the other modules deploy it)."""
    result = deploy(deploy_dir)
    assert result.returncode == 0, result.output[-4000:]
    assert "litellm-node-exporter.service is gone" in result.output
    # Debian's package stays installed, its own unit masked: nothing listens on 9100.
    assert ssh("systemctl is-active litellm-node-exporter prometheus-node-exporter", check=False).split() \
        == ["inactive"] * 2
    assert not ssh("ls /etc/systemd/system/litellm-node-exporter.service", check=False)
    assert not machines.port_open(TEST_GATEWAY.address, 9100)
    again = deploy(deploy_dir)
    assert again.changes == 0, again.output[-3000:]
