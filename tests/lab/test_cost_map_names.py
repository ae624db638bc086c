"""The in-proxy speed fix for the pinned LiteLLM: applied in the installed venv, and the same answers."""
from __future__ import annotations

import json

import pytest

from gateway.services.host import HOST_LIB
from tests.lab.conftest import ssh

pytestmark = pytest.mark.lab

CHECK = r"""
import json, litellm
import gateway_auth
from litellm.llms.ollama.common_utils import OllamaModelInfo
fixed = OllamaModelInfo._is_static_ollama_model
original = fixed.__wrapped__
names = ["ollama/llama3", "ollama_chat/LLAMA3", "llama3", "ollama_chat/mistral:7b", "nobody/never:1b", "gpt-4o"]
before = [(fixed(n), original(n)) for n in names]
litellm.register_model({"ollama_chat/brand-new:1b": {"litellm_provider": "ollama", "mode": "chat",
                                                     "input_cost_per_token": 0, "output_cost_per_token": 0}})
after = [(fixed(n), original(n)) for n in ("ollama/brand-new:1b", "brand-new:1b", "ollama_chat/other:1b")]
print(json.dumps({"applied": gateway_auth.cache_ollama_cost_map_names(), "before": before, "after": after}))
"""


def test_cost_map_lookup_is_cached_and_answers_as_litellm_does(first_deploy):
    out = ssh(f"cd /etc/litellm && LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONPATH={HOST_LIB} "
              "/opt/litellm/current/bin/python - <<'EOF'\n"
              + CHECK + "EOF")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["applied"] is True  # the pinned release gets the fix
    for fixed, original in result["before"] + result["after"]:
        assert fixed == original
    # A name registered after the first lookup (as the router does at start-up) is seen at once.
    assert result["after"][0] == [True, True] and result["after"][2] == [False, False]
    assert [pair[0] for pair in result["before"]].count(True) >= 2
