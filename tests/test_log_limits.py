"""The proxy's log filter for refused keys (in_proxy/log_limits.py), with the records LiteLLM 1.108.7
and uvicorn make, through the logging config the deploy renders (fast: no proxy)."""
from __future__ import annotations

import json
import logging
import logging.config
import sys
import time

from gateway.services.front import READINESS_PATH
from gateway.services.registry import rendered
from in_proxy.log_limits import QuietHealthChecks, RefusedKeys
from tests.test_files import HOST, table


def access(status: int, path: str = "/v1/models") -> logging.LogRecord:
    return logging.LogRecord("uvicorn.access", logging.INFO, "h11_impl.py", 1, '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:5000", "GET", path, "1.1", status), None)


def refusal() -> logging.LogRecord:
    try:
        raise ValueError("Invalid API key.")
    except ValueError:
        info = sys.exc_info()
    return logging.LogRecord("LiteLLM Proxy", logging.ERROR, "user_api_key_auth.py", 1,
                             "litellm.proxy.proxy_server.user_api_key_auth(): Exception occured - Invalid API key.\n"
                             "Requester IP Address:127.0.0.1", (), info)


def test_a_loop_of_bad_keys_costs_one_line_of_each_kind_per_interval_without_a_traceback():
    keep = RefusedKeys(interval=60)
    passed = [r for r in (refusal() if i % 2 else access(401) for i in range(2000)) if keep.filter(r)]
    assert [r.name for r in passed] == ["uvicorn.access", "LiteLLM Proxy"]
    assert passed[1].getMessage() == "API key refused (401)" and passed[1].exc_info is None
    assert all(keep.filter(r) for r in (access(200), access(429),
                                        logging.makeLogRecord({"name": "LiteLLM Proxy", "msg": "other"})))


def test_the_next_line_after_the_interval_says_how_many_were_left_out():
    keep = RefusedKeys(interval=0.05)
    assert keep.filter(access(401)) and not keep.filter(access(401)) and not keep.filter(access(401))
    time.sleep(0.06)
    record = access(401)
    assert keep.filter(record) and "[2 more refusal(s) in the last 0 s not logged]" in record.getMessage()


def test_a_health_check_found_ready_leaves_no_line_any_other_answer_does():
    quiet = QuietHealthChecks(["/health/readiness"])
    assert not quiet.filter(access(200, "/health/readiness")) and not quiet.filter(access(200, "/health/readiness?x=1"))
    assert quiet.filter(access(503, "/health/readiness")) and quiet.filter(access(200, "/v1/models"))
    assert quiet.filter(access(200, "/health/liveliness")) and quiet.filter(refusal())


def test_the_rendered_logging_config_puts_the_filter_on_both_loggers_and_ships_the_module(tmp_path):
    from gateway.settings import load
    from tests.test_settings import GOOD_KEY, seed_data
    s = load(seed_data(litellm_master_key=GOOD_KEY)).resolved(2)
    config = json.loads(rendered("logging.json.j2", s, HOST))
    assert config["loggers"]["uvicorn.access"]["filters"] == ["quiet_health_checks", "refused_keys"]
    assert config["filters"]["quiet_health_checks"]["paths"] == [READINESS_PATH]  # what the front asks
    assert config["loggers"]["LiteLLM Proxy"]["filters"] == ["refused_keys"]
    for handler in config["handlers"].values():
        if handler["class"] == "logging.StreamHandler":
            handler["stream"] = "ext://sys.stdout"
        else:
            handler["filename"] = str(tmp_path / "proxy.log")
    logging.config.dictConfig(config)  # resolves in_proxy.log_limits.RefusedKeys as the proxy does
    try:
        quiet, keep = logging.getLogger("uvicorn.access").filters
        assert isinstance(keep, RefusedKeys) and logging.getLogger("LiteLLM Proxy").filters == [keep]
        assert isinstance(quiet, QuietHealthChecks)
    finally:
        for name in config["loggers"]:
            logging.getLogger(name).filters.clear()
            logging.getLogger(name).handlers.clear()
    paths = {f.path for f in table()}
    assert {"/usr/local/lib/litellm-gateway/in_proxy/log_limits.py",
            "/usr/local/lib/litellm-gateway/in_proxy/__init__.py"} <= paths
    assert "Environment=PYTHONPATH=/usr/local/lib/litellm-gateway\n" in rendered("litellm@.service.j2", s, HOST)
