"""Metrics without a host: the scrape token, the settings, and what the front and LiteLLM are told."""
from __future__ import annotations

import stat
import threading

import pytest
import yaml

from gateway.services import metrics
from gateway.services.front import CLIENT_ROUTES
from gateway.services.registry import managed_files, rendered
from gateway.settings import REPO, SettingsError, load
from tests.test_settings import GOOD_KEY, seed_data

HOST = "hx-api-server.dev-test.hana-x.ai"


def settings(**overrides):
    return load(seed_data(litellm_master_key=GOOD_KEY, **overrides)).resolved(2)


def test_the_token_is_made_once_private_and_the_same_for_every_caller(tmp_path):
    s = settings(litellm_metrics_token_file=str(tmp_path / "secret" / "metrics.token"))
    assert metrics.read_token(s) is None
    made = []
    threads = [threading.Thread(target=lambda: made.append(metrics.ensure_token(s))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 1 and len(made[0]) >= 40
    path = tmp_path / "secret" / "metrics.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert metrics.ensure_token(s) == metrics.read_token(s) == made[0]


def test_hosts_get_the_digest_of_the_header_never_the_token(tmp_path):
    s = settings(litellm_metrics_token_file=str(tmp_path / "metrics.token"))
    rows = {f.path: f for f in managed_files(s, HOST)}
    token = metrics.read_token(s)
    assert token and all(token.encode() not in f.content for f in rows.values())
    row = rows[metrics.TOKEN_MAP]
    assert row.mode == "644" and row.restarts == ("litellm-front.service",)
    assert f"{metrics.header_digest(token)} prometheus\n" in row.content.decode()
    # Installed before the front's config: its check (haproxy -c) loads the map.
    order = list(rows)
    assert order.index(metrics.TOKEN_MAP) < order.index("/etc/haproxy/litellm-front.cfg")


def test_read_only_tasks_make_no_token(tmp_path):
    s = settings(litellm_metrics_token_file=str(tmp_path / "metrics.token"))
    rows = {f.path for f in managed_files(s, HOST, issue=False)}
    assert metrics.TOKEN_MAP not in rows and not (tmp_path / "metrics.token").exists()


def test_litellm_exports_per_team_and_deployment_but_no_key_person_or_client(tmp_path):
    s = settings(litellm_metrics_token_file=str(tmp_path / "t"))
    config = yaml.safe_load(rendered("config.yaml.j2", s, HOST))["litellm_settings"]
    assert config["callbacks"][-1] == "prometheus" and config["require_auth_for_metrics_endpoint"] is False
    assert {"hashed_api_key", "api_key_alias", "user_email", "end_user", "client_ip"} \
        <= set(config["prometheus_exclude_labels"])
    assert "team" not in config["prometheus_exclude_labels"] and "model_id" not in config["prometheus_exclude_labels"]


def test_the_front_serves_metrics_on_their_own_port_to_the_token_only(tmp_path):
    s = settings(litellm_metrics_token_file=str(tmp_path / "t"))
    cfg = rendered("litellm-front.cfg.j2", s, HOST)
    public, metrics_part = cfg.split("\nfrontend metrics\n")
    # the public port lets through the client routes only, exactly as spelled: no metrics there
    assert f"http-request deny deny_status 404 unless {{ path {' '.join(CLIENT_ROUTES)} }}" in public
    assert not any("metrics" in route for route in CLIENT_ROUTES)
    assert "    bind 0.0.0.0:9400\n" in metrics_part
    assert ("http-request deny deny_status 401 unless { req.hdr(authorization),sha2(256),hex,lower,"
            "map(/etc/haproxy/litellm-metrics.map) -m found }") in metrics_part
    for port in (4001, 4002):
        assert f"use_backend metrics_{port} if {{ path /metrics/instance/{port} }}" in metrics_part
        assert f"server i{port} 127.0.0.1:{port} check" in metrics_part
    assert "use-service prometheus-exporter if { path /metrics/front }" in metrics_part


def test_with_tls_the_metrics_port_is_https_too(tmp_path):
    s = settings(litellm_metrics_token_file=str(tmp_path / "t"), litellm_tls="own-ca",
                 litellm_tls_ca_dir=str(tmp_path / "ca"))
    cfg = rendered("litellm-front.cfg.j2", s, HOST)
    assert '    bind 0.0.0.0:9400 ssl crt "${LITELLM_FRONT_PEM}" alpn http/1.1\n' in cfg


def test_metrics_off_means_no_callback_no_port_no_token(tmp_path):
    s = settings(litellm_metrics=False, litellm_metrics_token_file=str(tmp_path / "t"))
    assert s.metrics is None
    assert "prometheus" not in yaml.safe_load(rendered("config.yaml.j2", s, HOST))["litellm_settings"]["callbacks"]
    assert "frontend metrics" not in rendered("litellm-front.cfg.j2", s, HOST)
    assert metrics.TOKEN_MAP not in {f.path for f in managed_files(s, HOST)} and not (tmp_path / "t").exists()
    # The release does not depend on it: turning metrics on or off installs nothing.
    assert s.requirements == settings(litellm_metrics_token_file=str(tmp_path / "t")).requirements


@pytest.mark.parametrize("overrides,problem", [
    ({"litellm_metrics_port": 4000}, "litellm_metrics_port: 4000 is taken by another of the gateway's ports"),
    ({"litellm_metrics_port": 4002}, "litellm_metrics_port: 4002 is taken"),
    ({"litellm_metrics_port": 80}, "litellm_metrics_port: 80 is out of range"),
    ({"litellm_metrics": "yes"}, "litellm_metrics: 'yes' is not True or False"),
    ({"litellm_metrics_token_file": str(REPO / "metrics.token")}, "litellm_metrics_token_file"),
])
def test_bad_metrics_settings_are_named_with_the_fix(overrides, problem):
    with pytest.raises(SettingsError) as refused:
        load(seed_data(litellm_master_key=GOOD_KEY, **overrides))
    assert problem in str(refused.value)


def test_every_route_a_team_key_may_call_passes_the_front():
    """in_proxy cannot import the control side: its list of team routes is read from its source."""
    import ast
    tree = ast.parse((REPO / "in_proxy" / "gateway_auth.py").read_text())
    [routes] = [ast.literal_eval(node.value) for node in ast.walk(tree)
                if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "TEAM_ROUTES" for t in node.targets)]
    assert routes and routes <= set(CLIENT_ROUTES), sorted(routes - set(CLIENT_ROUTES))
