"""Speed fixes for the pinned LiteLLM release, applied inside the proxy when the auth hook loads.

The fixes apply to the releases their code was read against (READ_AGAINST) and leave any other as
it is: an upgrade never runs a fix written for code that changed. Each replaces one function by a wrapper
that gives the same answer, cheaper, and keeps the original as `__wrapped__` (applied once, however
often the hook is loaded). A fix that cannot find what it wraps does nothing: a speed fix never
keeps the proxy from starting.

Runs inside the proxy, with the release's interpreter: standard library and LiteLLM only.
"""
from __future__ import annotations

import contextvars
import json
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

# The releases each fix was read against (tests/test_release_fixes.py holds the functions it replaces
# to the code read, by digest: a release that changes them fails that test, not the proxy).
READ_AGAINST = {"1.108.7"}


def _wrap(owner: Any, name: str, make: Callable[[Callable], Callable], static: bool = False) -> bool:
    """Replace owner.name by make(original); True when the fix is in place."""
    try:
        if version("litellm") not in READ_AGAINST:
            return False
    except Exception:
        return False
    current = owner.__dict__.get(name)
    function = current.__func__ if isinstance(current, staticmethod) else current
    if not callable(function):
        return False
    if hasattr(function, "__wrapped__"):
        return True  # applied already (the hook module was loaded twice)
    wrapper = make(function)
    wrapper.__wrapped__ = function  # type: ignore[attr-defined]
    setattr(owner, name, staticmethod(wrapper) if static else wrapper)
    return True


def cache_ollama_cost_map_names() -> bool:
    """Answer LiteLLM's "is this Ollama model in the cost map?" from a set built once per map.

    1.108.7's OllamaModelInfo._is_static_ollama_model rebuilds the lower-cased set of every cost-map
    name (4,000+) on each call, and a request makes many (cost, response headers, router model info):
    ~9 ms of the ~17 ms a request spent in the proxy when found. Upstream: BerriAI/litellm pull
    request 36574. Same names, same answer: the set is rebuilt whenever the map is replaced or grows.
    """
    try:
        import litellm
        from litellm.llms.ollama.common_utils import OllamaModelInfo
    except Exception:
        return False
    known: dict[str, Any] = {"stamp": None, "lowered": frozenset()}

    def make(original: Callable) -> Callable:
        def is_static_ollama_model(model: str) -> bool:
            cost_map = litellm.model_cost
            stamp = (id(cost_map), len(cost_map))
            if known["stamp"] != stamp:
                known["lowered"], known["stamp"] = frozenset(key.lower() for key in tuple(cost_map)), stamp
            stripped = OllamaModelInfo._strip_ollama_model_prefix(model)
            candidates = (model, stripped, "ollama/" + stripped, "ollama_chat/" + stripped)
            return any(candidate.lower() in known["lowered"] for candidate in candidates)
        return is_static_ollama_model

    return _wrap(OllamaModelInfo, "_is_static_ollama_model", make, static=True)


def skip_unkept_rate_limit_gauges() -> bool:
    """Prometheus: no rate-limit gauge labels built when no rate-limit series is kept.

    1.108.7's PrometheusLogger builds the labels of eight rate-limit gauges on every success, read
    from headers the gateway never sets, even when prometheus_metrics_config keeps none of them
    (the gateway's KEPT_METRICS): ~3 % of a worker's time here. When a kept series names a rate
    limit, or every series is kept, LiteLLM's own code runs as before.
    """
    try:
        from litellm.integrations.prometheus import PrometheusLogger
    except Exception:
        return False

    def make(original: Callable) -> Callable:
        def set_rate_limit_metrics(self: Any, *args: Any, **kwargs: Any) -> None:
            kept = getattr(self, "enabled_metrics", None)
            if kept and not any("rate_limit" in name for name in kept):
                return None
            return original(self, *args, **kwargs)
        return set_rate_limit_metrics

    return _wrap(PrometheusLogger, "_set_v3_rate_limit_allowed_and_used_metrics", make)


# Set while OllamaChatConfig.transform_response reads an answer that carries Ollama's own counts.
_COUNTS_GIVEN: contextvars.ContextVar[bool] = contextvars.ContextVar("gateway_ollama_counts_given", default=False)


def no_recount_of_counted_answers() -> bool:
    """An Ollama answer's token counts taken from Ollama alone, not counted again and dropped.

    1.108.7's OllamaChatConfig.transform_response writes
    `response_json.get("prompt_eval_count", litellm.token_counter(...))`: Python computes the default
    first, so every answer has its prompt and its completion counted with tiktoken, and the counts are
    thrown away whenever Ollama gave its own (always, but for a prompt Ollama had cached): ~3 % of a
    worker's time here. While such an answer is read, litellm.token_counter answers 0 (the value
    discarded); an answer without Ollama's counts is counted as before.
    """
    try:
        import litellm
        from litellm.llms.ollama.chat.transformation import OllamaChatConfig
    except Exception:
        return False
    counter = litellm.__dict__.get("token_counter")
    if not callable(counter):
        return False

    def make_transform(original: Callable) -> Callable:
        def transform_response(self: Any, model: Any, raw_response: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                answer = json.loads(raw_response.text)
                given = "prompt_eval_count" in answer and "eval_count" in answer
            except Exception:
                given = False
            token = _COUNTS_GIVEN.set(given)
            try:
                return original(self, model, raw_response, *args, **kwargs)
            finally:
                _COUNTS_GIVEN.reset(token)
        return transform_response

    def make_counter(original: Callable) -> Callable:
        def token_counter(*args: Any, **kwargs: Any) -> int:
            return 0 if _COUNTS_GIVEN.get() else original(*args, **kwargs)
        return token_counter

    return (_wrap(OllamaChatConfig, "transform_response", make_transform)
            and _wrap(litellm, "token_counter", make_counter))


FIXES = (cache_ollama_cost_map_names, skip_unkept_rate_limit_gauges, no_recount_of_counted_answers)


def apply() -> dict[str, bool]:
    """Every fix, applied where its release matches: {name: applied}."""
    return {fix.__name__: fix() for fix in FIXES}
