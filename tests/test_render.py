"""Rendered files: the seed fleet's config, the env file and the hardened unit."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from gateway.services.registry import managed_files, rendered
from gateway.settings import load
from tests.test_settings import GOOD_KEY, seed_data

DATA = Path(__file__).resolve().parent / "data"
REPO = Path(__file__).resolve().parent.parent
HOST = "hx-api-server.dev-test.hana-x.ai"

# Where LiteLLM 1.108.7 reads each key (shared/reference/litellm.md).
ROUTER_KEYS = {"routing_strategy", "num_retries", "timeout", "stream_timeout", "allowed_fails", "cooldown_time",
               "retry_policy", "fallbacks", "enable_pre_call_checks"}
LITELLM_KEYS = {"request_timeout", "num_retries", "drop_params", "cache", "cache_params", "callbacks", "json_logs",
                # litellm/__init__.py module settings, which litellm_settings sets (1.108.7)
                "require_auth_for_metrics_endpoint", "prometheus_exclude_labels", "prometheus_metrics_config",
                "global_disable_no_log_param"}
GENERAL_KEYS = {"master_key", "custom_auth", "background_health_checks", "health_check_interval",
                "max_parallel_requests", "global_max_parallel_requests", "database_url", "coordination_redis"}
PARAM_KEYS = {"model", "api_base", "api_key", "timeout", "stream_timeout", "max_tokens", "rpm", "tpm", "keep_alive",
              "max_retries", "num_ctx"}
INFO_KEYS = {"id", "mode", "max_input_tokens", "max_tokens", "input_cost_per_token", "output_cost_per_token",
             "supports_vision"}


@pytest.fixture
def seed():
    """The seed fleet's settings as resolved for a 2-CPU gateway host."""
    return load(seed_data(litellm_master_key=GOOD_KEY)).resolved(2)


def test_seed_fleet_renders_one_entry_per_model_and_backend(seed):
    config = yaml.safe_load(rendered("config.yaml.j2", seed, HOST))
    entries = {(e["model_name"], e["litellm_params"]["api_base"]) for e in config["model_list"]}
    assert len(config["model_list"]) == len(entries) == 10
    backends = {"http://hx-llm01-server.dev-test.hana-x.ai:11434", "http://hx-llm02-server.dev-test.hana-x.ai:11434"}
    for name in ("phi3-3.8b", "llama3-8b", "llama3.1-8b", "mistral-7b", "gemma2-9b"):
        assert {base for model, base in entries if model == name} == backends
    phi3 = next(e for e in config["model_list"] if e["model_name"] == "phi3-3.8b")
    assert phi3["litellm_params"]["model"] == "ollama_chat/phi3:3.8b-mini-128k-instruct-q8_0"
    assert phi3["model_info"] == {"id": "phi3-3.8b@hx-llm01-server", "mode": "chat", "max_input_tokens": 2048,
                                  "supports_vision": False, "input_cost_per_token": 0, "output_cost_per_token": 0}
    assert all(not e["litellm_params"]["api_base"].endswith("/v1") for e in config["model_list"])


def test_every_key_is_in_the_section_litellm_reads_it_from(seed):
    config = yaml.safe_load(rendered("config.yaml.j2", seed, HOST))
    assert set(config) == {"model_list", "router_settings", "litellm_settings", "general_settings"}
    assert set(config["router_settings"]) <= ROUTER_KEYS
    assert set(config["litellm_settings"]) <= LITELLM_KEYS
    assert set(config["general_settings"]) <= GENERAL_KEYS
    for entry in config["model_list"]:
        assert set(entry) == {"model_name", "litellm_params", "model_info"}
        assert set(entry["litellm_params"]) <= PARAM_KEYS
        assert set(entry["model_info"]) <= INFO_KEYS
    assert config["router_settings"]["routing_strategy"] == "least-busy"
    # Nothing the gateway depends on went missing either: the hook's two entry points, the shared counters.
    assert config["general_settings"]["custom_auth"] == "gateway_auth.user_api_key_auth"
    assert config["litellm_settings"]["callbacks"] == ["gateway_auth.request_limits", "prometheus"]
    assert "coordination_redis" in config["general_settings"]
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"


def test_the_seed_config_puts_keys_where_litellm_rejects_them():
    """The reason the seed's file fails: the same check that passes ours catches it."""
    seed_config = yaml.safe_load((DATA / "seed-config.yaml").read_text())
    assert not set(seed_config["router_settings"]) <= ROUTER_KEYS  # health_check_interval, ...
    assert "telemetry" in seed_config["general_settings"]


def test_secrets_stay_out_of_every_rendered_file_but_the_env_file(seed):
    for text in (rendered("config.yaml.j2", seed, HOST), rendered("litellm@.service.j2", seed, HOST),
                 rendered("logging.json.j2", seed, HOST),
                 rendered("litellm.env.j2", seed, HOST), rendered("redis.conf.j2", seed, HOST),
                 rendered("litellm-redis.service.j2", seed, HOST),
                 rendered("logrotate.j2", seed, HOST)):
        assert GOOD_KEY not in text


def test_env_file_runs_the_proxy_offline_and_read_only(seed):
    env = dict(line.split("=", 1) for line in rendered("litellm.env.j2", seed, HOST).splitlines()
               if "=" in line and not line.startswith("#"))
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert env["DISABLE_ADMIN_UI"] == "True"
    assert "LITELLM_MASTER_KEY" not in env  # added on the host side only


RENDER_ALL = """
import hashlib, json, sys
from gateway.services.registry import managed_files
from gateway.settings import load
from tests.test_settings import GOOD_KEY, seed_data
table = managed_files(load(seed_data(litellm_master_key=GOOD_KEY)).resolved(2), sys.argv[1], "{}")
print(json.dumps({f.path: f.sha256 for f in table}))
"""


def test_rendering_is_deterministic():
    """Every managed file, rendered by two separate processes with different hash seeds, is the same bytes:
    the checksum comparison is the deploy's whole change detection."""
    def render_in_a_process(seed: str) -> dict:
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", RENDER_ALL, HOST], cwd=REPO, env=env, capture_output=True,
                             text=True, check=True).stdout
        return json.loads(out)

    first, second = render_in_a_process("1"), render_in_a_process("2")
    assert len(first) >= 12 and first == second


def test_unit_runs_the_slots_release_on_the_instance_port_of_loopback_only(seed):
    unit = rendered("litellm@.service.j2", seed, HOST)
    assert ("ExecStart=/opt/litellm/slots/%i/bin/python /usr/local/lib/litellm-gateway/in_proxy/serve.py "
            "--config /etc/litellm/config.yaml --host 127.0.0.1 "
            "--port %i --num_workers 2") in unit
    assert "User=litellm" in unit and "RestartPreventExitStatus=3" in unit
    assert "LogsDirectory=litellm" in unit and "StateDirectory=litellm" in unit
    assert "Wants=network-online.target litellm-redis.service" in unit


def test_the_front_owns_the_gateway_port_and_checks_readiness_of_both_instances(seed):
    cfg = rendered("litellm-front.cfg.j2", seed, HOST)
    assert "    bind 0.0.0.0:4000\n" in cfg
    instances = cfg.split("\nbackend instances", 1)[1].split("\n\n", 1)[0]
    assert instances.endswith("    server i4001 127.0.0.1:4001\n    server i4002 127.0.0.1:4002")
    assert "option httpchk GET /health/readiness" in cfg and "expose-fd listeners" in cfg
    assert "retries 3" in cfg and "option redispatch 1" in cfg and "option http-server-close" in cfg
    # Streamed pieces are not held back (the time to the first token through the front: 94 -> 31 ms measured).
    assert "option http-no-delay" in cfg.split("defaults", 1)[1].split("frontend", 1)[0]
    unit = rendered("litellm-front.service.j2", seed, HOST)
    assert "ExecStart=/usr/sbin/haproxy -Ws -f /etc/haproxy/litellm-front.cfg\n" in unit
    assert "DynamicUser=yes" in unit and "CapabilityBoundingSet=\n" in unit
    low = rendered("litellm-front.service.j2", replace(seed, port=443, instance_ports=(4001, 4002)), HOST)
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in low  # only what binding port 443 needs


def test_the_front_asks_the_readiness_the_gateway_probe_asks():
    from gateway.services import front
    from on_host import readiness
    assert front.READINESS_PATH == readiness.PATH


def test_the_managed_files_are_only_rendered_with_a_worker_count():
    with pytest.raises(ValueError, match="resolved"):
        managed_files(load(seed_data(litellm_master_key=GOOD_KEY)), HOST, "{}")


def test_workers_share_limits_through_a_redis_on_a_unix_socket_only(seed):
    config = yaml.safe_load(rendered("config.yaml.j2", seed, HOST))
    assert config["general_settings"]["coordination_redis"] == {"url": "unix:///run/litellm-redis/redis.sock"}
    redis = dict(line.split(" ", 1) for line in rendered("redis.conf.j2", seed, HOST).splitlines()
                 if line and not line.startswith("#"))
    assert redis["port"] == "0"  # no TCP listener
    assert redis["unixsocket"] == "/run/litellm-redis/redis.sock" and redis["unixsocketperm"] == "700"
    assert redis["save"] == '""' and redis["appendonly"] == "no"
    unit = rendered("litellm-redis.service.j2", seed, HOST)
    assert "User=litellm" in unit and "RuntimeDirectory=litellm-redis" in unit and "PrivateNetwork=yes" in unit


def _exposure(unit_file: Path) -> float:
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit_file)],
                            capture_output=True, text=True)
    line = next(row for row in result.stdout.splitlines() if "Overall exposure level" in row)
    return float(line.split("level for")[1].split(":")[1].split()[0])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_scores_2_or_better_and_the_seed_unit_does_not(seed, tmp_path):
    for name, text in (("litellm.service", rendered("litellm@.service.j2", seed, HOST)),
                       ("litellm-redis.service", rendered("litellm-redis.service.j2", seed, HOST))):
        ours = tmp_path / name
        ours.write_text(text)
        result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(ours)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-2000:]
        assert _exposure(ours) <= 2.0, name
    theirs = tmp_path / "seed.service"
    theirs.write_text((DATA / "seed-litellm.service").read_text())
    assert _exposure(theirs) > 5.0


def test_logrotate_rotates_the_proxy_log_as_the_service_account_with_the_units_file_mode(seed):
    text = rendered("logrotate.j2", seed, HOST)
    assert f"{seed.log_dir}/proxy.log {{" in text.splitlines()
    # the log directory belongs to the service account: logrotate refuses it without `su`
    assert f"su {seed.user} {seed.group}" in text and f"rotate {seed.log_keep_days}" in text
    assert f"create 0600 {seed.user} {seed.group}" in text \
        and "UMask=0077" in rendered("litellm@.service.j2", seed.resolved(2), HOST)
    directives = [line.strip() for line in text.splitlines() if not line.startswith("#")]
    assert "copytruncate" not in directives  # the WatchedFileHandler reopens; copytruncate would lose lines


def test_every_deployment_carries_its_window_to_ollama():
    data = seed_data(litellm_master_key=GOOD_KEY)
    data["litellm_backends"]["hx-llm02-server"]["context_windows"] = {"phi3-3.8b": 4096}
    config = yaml.safe_load(rendered("config.yaml.j2", load(data).resolved(2), HOST))
    windows = {(e["model_name"], e["litellm_params"]["api_base"]): (e["litellm_params"]["num_ctx"],
                                                                    e["model_info"]["max_input_tokens"])
               for e in config["model_list"]}
    assert windows[("phi3-3.8b", "http://hx-llm02-server.dev-test.hana-x.ai:11434")] == (4096, 4096)
    assert {w for k, w in windows.items() if k[1].startswith("http://hx-llm01")} == {(2048, 2048)}
    assert config["router_settings"]["enable_pre_call_checks"] is True
    uniform = yaml.safe_load(rendered("config.yaml.j2", load(seed_data(litellm_master_key=GOOD_KEY)).resolved(2), HOST))
    # One window per model: the hook's refusal covers it; the router's second count of each prompt is left off.
    assert uniform["router_settings"]["enable_pre_call_checks"] is False
    env = rendered("litellm.env.j2", load(seed_data(litellm_context_check=False, litellm_context_margin=40)), HOST)
    assert "GATEWAY_CONTEXT_CHECK=0\n" in env and "GATEWAY_CONTEXT_MARGIN=40\n" in env


def test_every_deployment_is_priced_at_zero_so_litellm_prices_each_request_once():
    """Models missing from LiteLLM's cost map (most Ollama tags) are otherwise priced twice per request,
    failing both times (measured: 0.4 ms of CPU a request)."""
    config = yaml.safe_load(rendered("config.yaml.j2", load(seed_data(litellm_master_key=GOOD_KEY)).resolved(2), HOST))
    assert config["model_list"] and all(
        (e["model_info"]["input_cost_per_token"], e["model_info"]["output_cost_per_token"]) == (0, 0)
        for e in config["model_list"])


def test_an_embedding_model_is_served_by_ollamas_embed_api_and_a_vision_model_says_it_takes_images():
    s = load(seed_data(litellm_master_key=GOOD_KEY, litellm_models={
        "phi3": {"tag": "phi3:3.8b"}, "llava": {"tag": "llava:7b", "vision": True},
        "nomic": {"tag": "nomic-embed-text", "mode": "embedding", "context_window": 8192}},
        litellm_backends={"llm1": {"address": "llm1.example.org", "models": ["phi3", "llava", "nomic"]}})).resolved(2)
    config = yaml.safe_load(rendered("config.yaml.j2", s, HOST))
    entries = {e["model_name"]: e for e in config["model_list"]}
    assert entries["nomic"]["litellm_params"]["model"] == "ollama/nomic-embed-text"
    info = entries["nomic"]["model_info"]
    assert info["mode"] == "embedding" and "supports_vision" not in info
    assert entries["nomic"]["litellm_params"]["num_ctx"] == 8192
    assert (entries["llava"]["model_info"]["supports_vision"], entries["phi3"]["model_info"]["supports_vision"]) == (
        True, False)
