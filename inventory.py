"""The seed's dev-test fleet: one gateway in front of two Ollama backends serving five models.

An example of a real inventory; no test ever connects to it. Deploy with
`pyinfra inventory.py deploy.py`. The master key comes from outside git: set
LITELLM_MASTER_KEY in the environment, or leave it unset and each gateway generates its own on the
first deploy and keeps it in /etc/litellm/litellm.env.
"""
import os

from gateway.inventory import gateway_group

MODELS = {
    "phi3-3.8b": {"tag": "phi3:3.8b-mini-128k-instruct-q8_0", "context_window": 2048},
    "llama3-8b": {"tag": "llama3:8b", "context_window": 2048},
    "llama3.1-8b": {"tag": "llama3.1:8b", "context_window": 2048},
    "mistral-7b": {"tag": "mistral:7b", "context_window": 2048},
    "gemma2-9b": {"tag": "gemma2:9b", "context_window": 2048},
}

BACKENDS = {
    "hx-llm01-server": {"address": "hx-llm01-server.dev-test.hana-x.ai", "port": 11434, "models": list(MODELS)},
    "hx-llm02-server": {"address": "hx-llm02-server.dev-test.hana-x.ai", "port": 11434, "models": list(MODELS)},
}

gateways = gateway_group(
    ["hx-api-server.dev-test.hana-x.ai"],
    {
        "litellm_models": MODELS,
        "litellm_backends": BACKENDS,
        "litellm_master_key": os.environ.get("LITELLM_MASTER_KEY") or None,
        "_sudo": True,
    },
)
