"""The in-proxy speed fixes for the pinned LiteLLM (in_proxy/release_fixes.py), in the installed venv:
applied, the same answers as LiteLLM's own code, and the code they replace still the code they were
read against (a release that changes it fails here, not in the proxy)."""
from __future__ import annotations

import json

import pytest

from gateway.services.host import HOST_LIB
from tests.lab.conftest import ssh

pytestmark = pytest.mark.lab

# sha256 of the source of each function a fix replaces, in LiteLLM 1.108.7.
READ = {
    "OllamaModelInfo._is_static_ollama_model": "368f1a69d1e958aa3188669277fb2d15b12fb07b8c5a0e3781c6cad7bce0b87f",
    "PrometheusLogger._set_v3_rate_limit_allowed_and_used_metrics":
        "537767a19eacfe3bca7395cceb5463e45a39119766519055386e29d3ee52b889",
    "OllamaChatConfig.transform_response": "94b5a0f86f56126f634a3bc989b9854b44df6cd4aecb0401a8b5132378401644",
    "Logging.response_cost_calculator": "1e27e5c3fbe6de51275e67aac1f8fac8172b2cb334982f64b747a7f809f2bc84",
    "Logging._record_zero_cost_diagnostic": "44d72a1a2414407e5c78b779bc1c978e0b60568055aed1e6d33cdb4d506a8f18",
    "Router._increment_deployment_usage": "8e425a6823f067fd9183e6402ec27d12179b64195c1a3bead5b55ba78444ea22",
    "EnterpriseRouteChecks.should_call_route": "7b38a29a74fd5f11516f8f07cba26fa65ab5b29cec5c83c701564a19bb9e41aa",
    "ServiceLogging.async_service_success_hook": "3c6fde163653fcff0f101db7bb2e4f0e2903b797d2b7581b35781be84db7bc3b",
    "PrometheusLogger._set_virtual_key_rate_limit_metrics":
        "491ba74caf843b3164bdf7dd181cea3a3e13674153bfc1cccb68d5d839b359e3",
    "LeastBusyLoggingHandler.__init__": "9108631fa9cae963a542cb50f970dd0ac65a2675ab08cc6dd579ec3400529f2f",
}

CHECK = r"""
import hashlib, inspect, json, types
import httpx, litellm
import gateway_auth  # applies the fixes, as the proxy's import does
from in_proxy import release_fixes
from litellm.integrations.prometheus import PrometheusLogger
from litellm.llms.ollama.chat.transformation import OllamaChatConfig
from litellm.llms.ollama.common_utils import OllamaModelInfo
from litellm.litellm_core_utils.litellm_logging import Logging as CallLogging
from litellm.router import Router
from litellm._service_logger import ServiceLogging
from litellm_enterprise.proxy.auth.route_checks import EnterpriseRouteChecks
from litellm.caching.dual_cache import DualCache
from litellm.router_strategy.least_busy import LeastBusyLoggingHandler

replaced = {
    "OllamaModelInfo._is_static_ollama_model": OllamaModelInfo._is_static_ollama_model,
    "PrometheusLogger._set_v3_rate_limit_allowed_and_used_metrics":
        PrometheusLogger._set_v3_rate_limit_allowed_and_used_metrics,
    "OllamaChatConfig.transform_response": OllamaChatConfig.transform_response,
    "Logging.response_cost_calculator": CallLogging.response_cost_calculator,
    "Logging._record_zero_cost_diagnostic": CallLogging._record_zero_cost_diagnostic,
    "Router._increment_deployment_usage": Router._increment_deployment_usage,
    "EnterpriseRouteChecks.should_call_route": EnterpriseRouteChecks.should_call_route,
    "ServiceLogging.async_service_success_hook": ServiceLogging.async_service_success_hook,
    "PrometheusLogger._set_virtual_key_rate_limit_metrics": PrometheusLogger._set_virtual_key_rate_limit_metrics,
    "LeastBusyLoggingHandler.__init__": LeastBusyLoggingHandler.__init__,
}
digests = {name: hashlib.sha256(inspect.getsource(f.__wrapped__).encode()).hexdigest() for name, f in replaced.items()}

# The cost map's names: the same answers, and a name registered later seen at once.
fixed = OllamaModelInfo._is_static_ollama_model
original = fixed.__wrapped__
names = ["ollama/llama3", "ollama_chat/LLAMA3", "llama3", "ollama_chat/mistral:7b", "nobody/never:1b", "gpt-4o"]
before = [(fixed(n), original(n)) for n in names]
litellm.register_model({"ollama_chat/brand-new:1b": {"litellm_provider": "ollama", "mode": "chat",
                                                     "input_cost_per_token": 0, "output_cost_per_token": 0}})
after = [(fixed(n), original(n)) for n in ("ollama/brand-new:1b", "brand-new:1b", "ollama_chat/other:1b")]

# Ollama's answer read with and without its own counts; the real counter's calls counted (a spy put
# in the wrapper's closure, where it keeps LiteLLM's counter).
counted = []
real = litellm.token_counter.__wrapped__
def spy(*args, **kwargs):
    counted.append(1)
    return real(*args, **kwargs)
[cell] = [c for c in litellm.token_counter.__closure__ if c.cell_contents is real]
cell.cell_contents = spy
class Logging:
    def post_call(self, **kwargs): pass
def read(answer):
    counted.clear()
    response = httpx.Response(200, json=answer, request=httpx.Request("POST", "http://llm/api/chat"))
    result = OllamaChatConfig().transform_response(
        model="mistral:7b", raw_response=response, model_response=litellm.ModelResponse(), logging_obj=Logging(),
        request_data={}, messages=[{"role": "user", "content": "count these words please"}], optional_params={},
        litellm_params={}, encoding=None)
    return [result.usage.prompt_tokens, result.usage.completion_tokens, result.choices[0].message.content, len(counted)]
message = {"role": "assistant", "content": "four words of answer"}
given = read({"model": "mistral:7b", "message": message, "done": True, "done_reason": "stop",
              "prompt_eval_count": 11, "eval_count": 7})
missing = read({"model": "mistral:7b", "message": message, "done": True, "done_reason": "stop"})
expected_missing = [real(messages=[{"role": "user", "content": "count these words please"}]),
                    real(text="four words of answer")]

# Prometheus: with no rate-limit series kept, the gauges are not built; with one kept, LiteLLM's code runs.
gauges = PrometheusLogger._set_v3_rate_limit_allowed_and_used_metrics
skipped = gauges(types.SimpleNamespace(enabled_metrics={"litellm_proxy_total_requests_metric"}), None, None)
try:
    gauges(types.SimpleNamespace(enabled_metrics={"litellm_api_key_rate_limit_allowed_metric"}), None, None)
    delegated = False
except Exception:
    delegated = True  # LiteLLM's own code ran (and failed on the test's empty payload)

# Key gauges: both no-op (not kept): nothing built; one real: LiteLLM's own code runs.
from litellm.types.integrations.prometheus import NoOpMetric
key_gauges = PrometheusLogger._set_virtual_key_rate_limit_metrics
noop = types.SimpleNamespace(litellm_remaining_api_key_requests_for_model=NoOpMetric(),
                             litellm_remaining_api_key_tokens_for_model=NoOpMetric())
key_skipped = key_gauges(noop, None, None, {}, {})
try:
    key_gauges(types.SimpleNamespace(litellm_remaining_api_key_requests_for_model=object(),
                                     litellm_remaining_api_key_tokens_for_model=NoOpMetric()), None, None, {}, {})
    key_delegated = False
except Exception:
    key_delegated = True

# A router of a deployment priced at 0 (as config.yaml prices them) and one priced, answering from
# mock responses: the costs, diagnostics and usage counts with the fixes, then with LiteLLM's own code.
import asyncio, os
from litellm.integrations.custom_logger import CustomLogger
seen = []
class Capture(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        payload = kwargs.get("standard_logging_object") or {}
        seen.append([kwargs.get("model"), kwargs.get("response_cost"), payload.get("response_cost"),
                     payload.get("zero_cost_diagnostic")])
litellm.callbacks = [Capture()]
def deployment(name, tag, price, **limits):
    return {"model_name": name, "litellm_params": {"model": f"ollama_chat/{tag}", "api_base": "http://llm:11434",
                                                   "mock_response": "hi there", "num_ctx": 2048, **limits},
            "model_info": {"id": f"{name}@llm", "mode": "chat", "input_cost_per_token": price,
                           "output_cost_per_token": price}}
router = litellm.Router(model_list=[deployment("free", "phi3:3.8b-mini-128k-instruct-q8_0", 0),
                                    deployment("priced", "mistral:7b", 1e-6),
                                    deployment("limited", "llama3:8b", 0, rpm=1000)], routing_strategy="least-busy")
async def outcome(call):
    try:
        return ["ok", await call]
    except Exception as error:
        return ["raised", type(error).__name__]
async def one_round():
    seen.clear()
    costs = []
    for model in ("free", "priced", "free", "limited"):
        answer = await router.acompletion(model=model, messages=[{"role": "user", "content": "hello"}])
        costs.append([model, answer._hidden_params.get("response_cost")])
    await asyncio.sleep(0.5)
    usage = [await outcome(router._increment_deployment_usage(
        deployment_id=f"{name}@llm", deployment_name=None, model_group=name, total_tokens=5, rpm_increment=1,
        parent_otel_span=None)) for name in ("free", "free", "limited")]
    usage = [[kind, value.rsplit(":", 1)[0] if isinstance(value, str) else value] for kind, value in usage]
    return {"costs": costs, "logged": sorted(seen), "usage": usage,
            "service": await ServiceLogging().async_service_success_hook(service="redis", duration=0.01,
                                                                          call_type="x")}
async def both():
    fixed = await one_round()
    for owner, name in ((CallLogging, "response_cost_calculator"), (CallLogging, "_record_zero_cost_diagnostic"),
                        (Router, "_increment_deployment_usage")):
        setattr(owner, name, getattr(owner, name).__wrapped__)
    return fixed, await one_round()
with_fixes, litellms_own = asyncio.run(both())

# Least-busy on a router cache with a Redis attached: counted and read in the router's memory only (a
# Redis that fails when asked anything), the least busy picked by those counts.
class NoRedis:
    def __getattr__(self, name):
        raise AssertionError(f"Redis asked for {name}")
shared = DualCache(redis_cache=NoRedis())
handler = LeastBusyLoggingHandler(router_cache=shared)
call = {"litellm_params": {"metadata": {"model_group": "m"}, "model_info": {"id": "a"}}}
handler.log_pre_api_call("m", [], call)
picked = handler.get_available_deployments("m", [{"model_info": {"id": "a"}}, {"model_info": {"id": "b"}}])
least_busy = [handler.router_cache.redis_cache is None,
              handler.router_cache.in_memory_cache is shared.in_memory_cache, picked["model_info"]["id"],
              shared.get_cache("m_request_count:a", local_only=True)]
asyncio.run(handler.async_log_success_event(call, None, None, None))
least_busy.append(shared.get_cache("m_request_count:a", local_only=True))

# Route toggles: unset, nothing asked; set, LiteLLM's own check runs (and refuses without a licence).
route_unset = EnterpriseRouteChecks.should_call_route("/key/generate")
os.environ["DISABLE_ADMIN_ENDPOINTS"] = "true"
try:
    EnterpriseRouteChecks.should_call_route("/key/generate")
    route_delegated = False
except Exception:
    route_delegated = True

print(json.dumps({"applied": release_fixes.apply(), "digests": digests, "before": before, "after": after,
                  "given": given, "missing": missing, "expected_missing": expected_missing,
                  "skipped": skipped, "delegated": delegated, "key_skipped": key_skipped,
                  "key_delegated": key_delegated, "with_fixes": with_fixes, "litellms_own": litellms_own,
                  "route_unset": route_unset, "route_delegated": route_delegated, "least_busy": least_busy}))
"""


def test_release_fixes_are_applied_and_answer_as_litellm_does(first_deploy):
    out = ssh(f"cd /etc/litellm && LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONPATH={HOST_LIB} "
              "/opt/litellm/current/bin/python - <<'EOF'\n"
              + CHECK + "EOF")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["applied"] == {"cache_ollama_cost_map_names": True, "skip_unkept_rate_limit_gauges": True,
                                 "no_recount_of_counted_answers": True, "no_pricing_of_zero_priced_answers": True,
                                 "no_usage_counts_for_unlimited_deployments": True,
                                 "no_route_toggles_when_unset": True,
                                 "no_service_events_without_their_callbacks": True, "skip_unkept_key_gauges": True,
                                 "least_busy_counts_per_worker": True}
    # What each fix replaces is the code it was read against: a release that changes it fails here.
    assert result["digests"] == READ
    # The cost map's names: LiteLLM's answers; a name registered after the first lookup (as the router does at
    # start-up) is seen at once.
    for fixed, original in result["before"] + result["after"]:
        assert fixed == original
    assert result["after"][0] == [True, True] and result["after"][2] == [False, False]
    assert [pair[0] for pair in result["before"]].count(True) >= 2
    # Ollama's counts taken as given, none counted again; without them, counted as LiteLLM counts.
    assert result["given"] == [11, 7, "four words of answer", 0]
    assert result["missing"] == [*result["expected_missing"], "four words of answer", 2]
    # No rate-limit series kept: no gauge built; one kept: LiteLLM's own code runs.
    assert result["skipped"] is None and result["delegated"] is True
    assert result["key_skipped"] is None and result["key_delegated"] is True
    # Costs, logged costs and diagnostics, and the router's usage counts: the same as LiteLLM's own code
    # gives (0.0 and no diagnostic for the zero-priced deployments, a price for the priced one; nothing
    # counted where no limit is set, the same error where the model is not in the cost map, the count
    # where a limit reads it).
    fixed, own = result["with_fixes"], result["litellms_own"]
    assert fixed == own, (fixed, own)
    costs = dict(map(tuple, fixed["costs"]))
    assert costs["free"] == 0.0 and costs["priced"] > 0 and costs["limited"] == 0.0
    assert [entry[3] for entry in fixed["logged"]] == [None] * 4
    assert fixed["usage"][2][0] == "ok" and fixed["usage"][2][1].startswith("global_router:limited@llm")
    assert fixed["service"] is None
    assert result["route_unset"] is None and result["route_delegated"] is True
    # Least-busy: one request in flight on a, b picked; the count back to 0 once it ended; Redis never asked.
    assert result["least_busy"] == [True, True, "b", 1, 0]
