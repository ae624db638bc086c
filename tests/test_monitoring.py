"""The monitoring host's settings, what it watches, and its rendered files, checked by Prometheus' own
promtool (unpacked from Debian's package by ./run setup): the alert rules against their unit tests in
tests/alerts/, the Prometheus config as Prometheus reads it."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.inventory import is_gateway, is_monitoring, monitored, monitoring_group
from gateway.monitoring.files import PATHS, monitoring_files, node_exporter_files
from gateway.monitoring.settings import READINESS, READY, THRESHOLDS, load_monitoring, watch
from gateway.settings import SettingsError, load
from lab.fleet import FLEET_SETTINGS, fleet_data
from lab.ollama_double import model_entry
from lab.topology import BACKENDS, fleet_hosts
from on_host import readiness

REPO = Path(__file__).resolve().parent.parent
PROMTOOL = shutil.which("promtool", path=str(REPO / ".venv/bin")) or shutil.which("promtool")
WEBHOOK = {"monitoring_receiver": {"webhook_url": "http://127.0.10.91:9099/alerts"}}
KEY = "sk-" + "0123456789abcdef" * 3
PASSWORD = "monitoring-canary-" + "5" * 20


def gateway(tmp_path: Path, name: str = "gw2.lab.test", **overrides):
    data = {**fleet_data(), "litellm_master_key": KEY, "litellm_bind_address": "127.0.10.102",
            "litellm_metrics_token_file": str(tmp_path / "metrics.token"), **overrides}
    return name, load(data)


def files(tmp_path: Path, monitoring: dict | None = None, gateways: list | None = None) -> dict[str, str]:
    m = load_monitoring({**WEBHOOK, "monitoring_bind_address": "127.0.10.90", **(monitoring or {})})
    w = watch(gateways or [gateway(tmp_path)], [("mon1.lab.test", "127.0.10.90")])
    return {Path(f.path).name: f.content.decode() for f in monitoring_files(m, w, "mon1.lab.test", PASSWORD)}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert PROMTOOL, "promtool is missing: ./run setup unpacks it into .venv/bin"
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_ready_means_what_the_hosts_own_probe_means():
    assert (READINESS, READY) == (readiness.PATH, readiness.READY)


def test_alert_rules_pass_their_promtool_unit_tests(tmp_path):
    (tmp_path / "alert-rules.yml").write_text(files(tmp_path)["alert-rules.yml"])
    shutil.copy(REPO / "tests/alerts/alert-rules.test.yml", tmp_path)
    result = promtool("test", "rules", "alert-rules.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_reach_the_rules(tmp_path):
    rules = yaml.safe_load(files(tmp_path,
                                 {"monitoring_thresholds": {"down_for": 45, "error_ratio": 0.2}})["alert-rules.yml"])
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert by_name["BackendDown"]["for"] == "45s" and by_name["ModelErrorRatioHigh"]["expr"].endswith("> 0.2")
    defaults = yaml.safe_load(files(tmp_path)["alert-rules.yml"])
    assert {r["alert"]: r for g in defaults["groups"] for r in g["rules"]}["BackendDown"]["for"] \
        == f"{THRESHOLDS['down_for']}s"


def test_prometheus_reads_the_config_it_is_given(tmp_path):
    """Every gateway slot, front, host, backend, model and readiness is a target; promtool accepts it all."""
    fleet = [gateway(tmp_path, h.fqdn, **{**FLEET_SETTINGS, "litellm_tls_ca_dir": str(tmp_path / "ca")},
                     litellm_bind_address=h.address,
                     litellm_fleet_members=[[f.fqdn, f.address] for f in fleet_hosts(2)]) for h in fleet_hosts(2)]
    rendered = files(tmp_path, gateways=[gateway(tmp_path), *fleet])
    for name, text in rendered.items():
        (tmp_path / name).write_text(text.replace("/etc/litellm-monitoring", str(tmp_path)))
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(rendered["prometheus.yml"])
    jobs = {job["job_name"]: [t for c in job["static_configs"] for t in [c] * len(c["targets"])]
            for job in config["scrape_configs"]}
    assert len(jobs["litellm"]) == 6 and len(jobs["litellm-front"]) == 3 and len(jobs["node"]) == 4
    assert {c["labels"]["__scheme__"] for c in jobs["litellm"]} == {"http", "https"}
    assert [c["targets"][0] for c in jobs["gateway-readiness"]][-1] == "https://gateway.lab.test:4000/health/readiness"
    # Each model of each backend (the fleet's llm3/llm4 are not in fleet_data()).
    assert len(jobs["ollama-models"]) == sum(len(b.models) for b in BACKENDS)
    assert rendered["gateways-ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    assert rendered["metrics.token"].strip() == (tmp_path / "metrics.token").read_text().strip()


def test_a_model_probe_matches_the_tags_ollama_lists_and_no_other(tmp_path):
    blackbox = yaml.safe_load(files(tmp_path)["blackbox.yml"])["modules"]
    tags = json.dumps({"models": [model_entry("phi3:3.8b-mini-128k-instruct-q8_0", {}), model_entry("llama3:8b", {})]})
    def pattern(tag: str) -> str:
        return blackbox[f"ollama_has_{re.sub(r'[^A-Za-z0-9_]', '_', tag)}"]["http"][
            "fail_if_body_not_matches_regexp"][0]

    assert re.search(pattern("llama3:8b"), tags) and re.search(pattern("phi3:3.8b-mini-128k-instruct-q8_0"), tags)
    assert not re.search(pattern("llama3.1:8b"), tags) and not re.search(pattern("gemma2:9b"), tags)
    ready = blackbox["gateway_ready"]["http"]["fail_if_body_not_matches_regexp"][0]
    assert re.search(ready, '{"status":"healthy","db":"Not connected"}') \
        and not re.search(ready, '{"status":"unhealthy"}')


def test_the_scrape_token_is_given_to_prometheus_only(tmp_path):
    rows = {f.name: f for f in monitoring_files(load_monitoring({**WEBHOOK}), watch([gateway(tmp_path)], []), "mon1",
                                                PASSWORD)}
    token = rows["metrics.token"]
    assert (token.user, token.group, token.mode) == ("root", "prometheus", "640")
    assert (tmp_path / "metrics.token").read_text().strip() not in repr(token)
    assert all(row.path != PATHS.token for name, row in rows.items() if name != "metrics.token")


def test_gateways_with_different_scrape_tokens_are_refused(tmp_path):
    with pytest.raises(SettingsError, match="one token"):
        watch([gateway(tmp_path),
               gateway(tmp_path, "gw3.lab.test", litellm_metrics_token_file=str(tmp_path / "other"))], [])


def test_the_receiver_is_an_email_or_a_webhook(tmp_path):
    email = {"monitoring_receiver": {"email": "oncall@example.org", "smarthost": "mail.example.org:587",
                                     "from": "am@example.org"}}
    config = yaml.safe_load(files(tmp_path, email)["alertmanager.yml"])
    assert config["receivers"][0]["email_configs"][0]["to"] == "oncall@example.org"
    assert config["global"]["smtp_smarthost"] == "mail.example.org:587"
    hook = yaml.safe_load(files(tmp_path)["alertmanager.yml"])
    assert hook["receivers"][0]["webhook_configs"][0] == {"url": WEBHOOK["monitoring_receiver"]["webhook_url"],
                                                          "send_resolved": True}


@pytest.mark.parametrize("data, named", [
    ({}, "monitoring_receiver: None: nobody would be woken"),
    ({"monitoring_receiver": {"webhook_url": "ftp://x"}}, "monitoring_receiver.webhook_url"),
    ({"monitoring_receiver": {"email": "x"}}, "monitoring_receiver.email"),
    ({**WEBHOOK, "monitoring_retention": "forever"}, "monitoring_retention"),
    ({**WEBHOOK, "monitoring_prometheus_port": 9100}, "must all differ"),
    ({**WEBHOOK, "monitoring_thresholds": {"error_ratio": 5}}, "monitoring_thresholds.error_ratio"),
    ({**WEBHOOK, "monitoring_thresholds": {"down_fro": 5}}, "unknown keys ['down_fro']"),
    ({**WEBHOOK, "monitoring_bind_address": "mon1"}, "monitoring_bind_address"),
    ({**WEBHOOK, "monitoring_scrape_intervall": 5}, "monitoring_scrape_intervall: unknown setting"),
])
def test_bad_monitoring_settings_are_named_before_any_host_is_touched(data, named):
    with pytest.raises(SystemExit) as refused:
        monitoring_group(["mon1.example.org"], data)
    assert named in str(refused.value) and "Nothing was changed on any host" in str(refused.value)


def test_roles_come_from_the_hosts_settings(tmp_path):
    assert is_gateway(fleet_data()) and not is_monitoring(fleet_data())
    _, data = monitoring_group(["mon1.example.org"], {**WEBHOOK})
    assert is_monitoring(data) and not is_gateway(data)
    assert monitored([fleet_data(), data]) and not monitored([fleet_data()])


def test_the_node_exporter_listens_where_its_host_serves():
    unit = node_exporter_files("127.0.10.102", "gw2", PASSWORD)[1].content.decode()
    assert "--web.listen-address=127.0.10.102:9100" in unit and "User=prometheus" in unit
    assert "ProtectSystem=strict" in unit and "ProtectHome=read-only" in unit and "ProcSubset" not in unit


def test_usage_counts_every_request_of_a_series_born_reset_or_old():
    from gateway.usage import counted, seconds
    start, step = 1000.0, 15
    assert counted([(1005.0, "7"), (1020.0, "9")], start, step) == 2  # there at the start: only what came after
    assert counted([(1100.0, "5"), (1115.0, "9")], start, step) == 9  # born inside: from 0
    assert counted([(1005.0, "7"), (1020.0, "10"), (1035.0, "3"), (1050.0, "4")], start, step) == 3 + 3 + 1  # a restart
    assert seconds("24h") == 86400 and seconds("30m") == 1800
    with pytest.raises(ValueError, match="not a duration"):
        seconds("1 day")


def test_every_service_asks_for_a_login_and_only_hashes_of_the_password_reach_a_host(tmp_path):
    import bcrypt

    from gateway.monitoring.auth import scraper_password
    m = load_monitoring({**WEBHOOK, "monitoring_bind_address": "127.0.10.90"})
    rows = {f.path: f for f in monitoring_files(m, watch([gateway(tmp_path)], []), "mon1", PASSWORD)}
    rows.update({f.path: f for f in node_exporter_files("127.0.10.102", "gw2", PASSWORD)})
    assert all(PASSWORD.encode() not in row.content for row in rows.values())
    for unit in ("litellm-prometheus.service", "litellm-alertmanager.service", "litellm-blackbox.service"):
        assert f"--web.config.file={PATHS.web_config}" in rows[f"/etc/systemd/system/{unit}"].content.decode()
    assert f"--web.config.file={PATHS.node_web_config}" \
        in rows["/etc/systemd/system/litellm-node-exporter.service"].content.decode()
    users = yaml.safe_load(rows[PATHS.web_config].content)["basic_auth_users"]
    assert bcrypt.checkpw(PASSWORD.encode(), users["operator"].encode())
    assert bcrypt.checkpw(scraper_password(PASSWORD).encode(), users["prometheus"].encode())
    nodes = yaml.safe_load(rows[PATHS.node_web_config].content)["basic_auth_users"]
    assert list(nodes) == ["prometheus"]  # the operators' password opens no node exporter
    assert rows[PATHS.scraper_password].content.decode().strip() == scraper_password(PASSWORD)
    assert (rows[PATHS.web_config].user, rows[PATHS.web_config].group, rows[PATHS.web_config].mode) == \
        ("root", "prometheus", "640")
    # Prometheus logs in to Alertmanager and every exporter it scrapes, but not to the gateways (their token).
    config = yaml.safe_load(rows[PATHS.config].content)
    login = {"username": "prometheus", "password_file": PATHS.scraper_password}
    assert config["alerting"]["alertmanagers"][0]["basic_auth"] == login
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert all(jobs[name].get("basic_auth") == login for name in
               ("node", "gateway-readiness", "ollama-version", "ollama-models")), jobs
    assert "basic_auth" not in jobs["litellm"] and "basic_auth" not in jobs["litellm-front"]
    # The same password renders the same files: a second deploy changes nothing.
    again = {f.path: f.sha256 for f in monitoring_files(m, watch([gateway(tmp_path)], []), "mon1", PASSWORD)}
    assert all(rows[path].sha256 == digest for path, digest in again.items())
    (tmp_path / "web.yml").write_bytes(rows[PATHS.web_config].content)
    result = promtool("check", "web-config", "web.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_monitoring_hosts_with_different_password_files_are_refused(tmp_path):
    from gateway.monitoring.auth import monitoring_password
    _, one = monitoring_group(["mon1.example.org"], {**WEBHOOK, "monitoring_password_file": str(tmp_path / "a")})
    _, two = monitoring_group(["mon2.example.org"], {**WEBHOOK, "monitoring_password_file": str(tmp_path / "b")})
    assert monitoring_password([fleet_data()]) is None
    assert monitoring_password([one, fleet_data()], issue=False) is None  # not made yet, and not made by a read
    made = monitoring_password([one, fleet_data()])
    assert made == (tmp_path / "a").read_text().strip() and oct((tmp_path / "a").stat().st_mode)[-3:] == "600"
    with pytest.raises(SettingsError, match="the same file"):
        monitoring_password([one, two])


def test_with_monitoring_tls_the_services_serve_https_from_the_gateways_own_ca(tmp_path):
    from cryptography import x509

    own = gateway(tmp_path, litellm_tls="own-ca", litellm_tls_ca_dir=str(tmp_path / "ca"))
    m = load_monitoring({**WEBHOOK, "monitoring_bind_address": "127.0.10.90", "monitoring_tls": "own-ca"})
    rows = {f.path: f for f in monitoring_files(m, watch([own], []), "mon1.lab.test", PASSWORD)}
    leaf = x509.load_pem_x509_certificates(rows[PATHS.tls_cert].content)[0]
    ca = x509.load_pem_x509_certificate((tmp_path / "ca/ca.crt").read_bytes())
    assert leaf.issuer == ca.subject and rows[PATHS.tls_key].mode == "640"
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mon1.lab.test" in names.get_values_for_type(x509.DNSName)
    assert PASSWORD.encode() not in rows[PATHS.tls_key].content
    web = yaml.safe_load(rows[PATHS.web_config].content)
    assert web["tls_server_config"] == {"cert_file": PATHS.tls_cert, "key_file": PATHS.tls_key}
    assert m.urls("mon1.lab.test")["prometheus_url"] == "https://127.0.10.90:9090"
    assert "--web.external-url=https://127.0.10.90:9090/" \
        in rows["/etc/systemd/system/litellm-prometheus.service"].content.decode()
    # They set TLS up at start: the certificate's fingerprint is in each unit, so a new one restarts them.
    for unit in ("litellm-prometheus.service", "litellm-alertmanager.service", "litellm-blackbox.service"):
        assert "certificate fingerprint" in rows[f"/etc/systemd/system/{unit}"].content.decode(), unit
    config = yaml.safe_load(rows[PATHS.config].content)
    assert config["alerting"]["alertmanagers"][0]["scheme"] == "https"
    assert config["alerting"]["alertmanagers"][0]["tls_config"] == {"ca_file": PATHS.ca_bundle}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert all(jobs[name]["scheme"] == "https" for name in ("gateway-readiness", "ollama-version", "ollama-models"))
    assert "scheme" not in jobs["node"]  # the node exporters stay HTTP, behind Prometheus' login
    assert ca.public_bytes(__import__("cryptography").hazmat.primitives.serialization.Encoding.PEM).decode() \
        in rows[PATHS.ca_bundle].content.decode()
    # Without a gateway of its own CA, nothing can issue the certificate: said before any host changes.
    with pytest.raises(SettingsError, match="monitoring_tls"):
        monitoring_files(m, watch([gateway(tmp_path)], []), "mon1.lab.test", PASSWORD)
    with pytest.raises(SystemExit, match="monitoring_tls"):
        monitoring_group(["mon1.example.org"], {**WEBHOOK, "monitoring_tls": "yes"})


def test_a_refused_login_names_the_password_file_and_the_fix():
    """fab status / fab usage on a machine without the monitoring password (or with another one)."""
    import http.server
    import threading

    from gateway.monitoring.prometheus import PrometheusError, Watcher

    class Refuses(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="Prometheus"')
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for password, said in ((None, "is missing"), ("wrong", "holds another password")):
            watcher = Watcher("mon1", url, url, password, None, "~/.local/share/litellm-gateway/monitoring.password")
            with pytest.raises(PrometheusError, match=f"monitoring_password_file .* {said} on this machine; copy it"):
                watcher.query("up")
    finally:
        server.shutdown()


def test_every_alert_has_its_row_in_the_docs_and_a_case_in_the_rules_tests():
    rules = (REPO / "templates/alert-rules.yml.j2").read_text()
    docs = (REPO / "docs/monitoring.md").read_text()
    cases = (REPO / "tests/alerts/alert-rules.test.yml").read_text()
    alerts = re.findall(r"- alert: (\w+)", rules)
    assert len(alerts) >= 10
    for alert in alerts:
        assert re.search(rf"^\| [^|]*`{alert}`", docs, re.M), f"{alert}: no row in docs/monitoring.md's alerts table"
        assert f'alertname="{alert}"' in cases or f"alertname: {alert}" in cases, f"{alert}: no promtool case"
