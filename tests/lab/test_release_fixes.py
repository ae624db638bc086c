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
}

CHECK = r"""
import hashlib, inspect, json, types
import httpx, litellm
import gateway_auth  # applies the fixes, as the proxy's import does
from in_proxy import release_fixes
from litellm.integrations.prometheus import PrometheusLogger
from litellm.llms.ollama.chat.transformation import OllamaChatConfig
from litellm.llms.ollama.common_utils import OllamaModelInfo

replaced = {
    "OllamaModelInfo._is_static_ollama_model": OllamaModelInfo._is_static_ollama_model,
    "PrometheusLogger._set_v3_rate_limit_allowed_and_used_metrics":
        PrometheusLogger._set_v3_rate_limit_allowed_and_used_metrics,
    "OllamaChatConfig.transform_response": OllamaChatConfig.transform_response,
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

print(json.dumps({"applied": release_fixes.apply(), "digests": digests, "before": before, "after": after,
                  "given": given, "missing": missing, "expected_missing": expected_missing,
                  "skipped": skipped, "delegated": delegated}))
"""


def test_release_fixes_are_applied_and_answer_as_litellm_does(first_deploy):
    out = ssh(f"cd /etc/litellm && LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONPATH={HOST_LIB} "
              "/opt/litellm/current/bin/python - <<'EOF'\n"
              + CHECK + "EOF")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["applied"] == {"cache_ollama_cost_map_names": True, "skip_unkept_rate_limit_gauges": True,
                                 "no_recount_of_counted_answers": True}
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
