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
import os
from collections.abc import Callable, Mapping
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


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _zero_priced(logging_obj: Any) -> bool:
    """The call went to an Ollama deployment priced at 0 (the gateway's config.yaml), and nothing in
    the request or the deployment can add a price: LiteLLM's answer is then 0.0, with no diagnostic."""
    from litellm.litellm_core_utils.litellm_logging import _CUSTOM_PRICING_KEYS, _deployment_model_info

    params = getattr(logging_obj, "litellm_params", None)
    details = getattr(logging_obj, "model_call_details", None)
    if not isinstance(params, dict) or not isinstance(details, dict):
        return False
    if details.get("custom_llm_provider") not in ("ollama", "ollama_chat") or details.get("cache_hit") is True:
        return False
    if any(params.get(key) is not None for key in _CUSTOM_PRICING_KEYS & params.keys()):
        return False
    info = _deployment_model_info(params)
    if info.get("input_cost_per_token") != 0 or info.get("output_cost_per_token") != 0:
        return False
    if any(_positive(value) or isinstance(value, Mapping) for key, value in info.items()
           if "cost" in key or "pricing" in key or "ptu" in key):
        return False
    return not _positive(details.get("additional_response_cost"))


def no_pricing_of_zero_priced_answers() -> bool:
    """An answer of a deployment priced at 0 costs 0.0, without a cost calculation or its diagnostic.

    1.108.7's Logging.response_cost_calculator runs the whole cost calculation (model info look-ups,
    usage parsing) for every answer, twice per request (response headers, logging), and
    _record_zero_cost_diagnostic then looks the prices up again to explain a cost of 0: ~4 % of a
    worker's time here, all to arrive at 0.0 and no diagnostic for the gateway's deployments, which
    config.yaml prices at 0. Any other deployment, a client's own pricing or an added cost: LiteLLM's
    code, as before.
    """
    try:
        from litellm.litellm_core_utils.litellm_logging import Logging
    except Exception:
        return False

    def make_calculator(original: Callable) -> Callable:
        def response_cost_calculator(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _zero_priced(self):
                self.model_call_details["zero_cost_diagnostic"] = None
                return 0.0
            return original(self, *args, **kwargs)
        return response_cost_calculator

    def make_diagnostic(original: Callable) -> Callable:
        def _record_zero_cost_diagnostic(self: Any, result: Any, response_cost: Any, *args: Any,
                                         calculation_failed: bool = False, **kwargs: Any) -> None:
            if response_cost == 0 and not calculation_failed and _zero_priced(self):
                self.model_call_details["zero_cost_diagnostic"] = None
                return None
            return original(self, result, response_cost, *args, calculation_failed=calculation_failed, **kwargs)
        return _record_zero_cost_diagnostic

    return (_wrap(Logging, "response_cost_calculator", make_calculator)
            and _wrap(Logging, "_record_zero_cost_diagnostic", make_diagnostic))


def no_usage_counts_for_unlimited_deployments() -> bool:
    """The router's per-deployment usage counts skipped where no deployment limit reads them.

    1.108.7's Router._increment_deployment_usage builds a Deployment and its model info twice per
    request, only to find no tpm/rpm limit and count nothing (for a model missing from LiteLLM's
    cost map the look-up raises, every time): ~2.5 % of a worker's time here. Its verdict for a
    deployment is kept until the deployment or the cost map changes: nothing to count, or the same
    error raised again. A deployment with a limit is counted as before.
    """
    try:
        import litellm
        from litellm.exceptions import ModelNotMappedError
        from litellm.router import Router
        from litellm.router_utils.pre_call_checks.io_token_rate_limit_check import deployment_has_io_token_limits
    except Exception:
        return False
    known: dict[str, tuple[tuple, Any]] = {}  # deployment id -> (stamp, None: nothing to count | the error's args)

    def make(original: Callable) -> Callable:
        async def _increment_deployment_usage(self: Any, *, deployment_id: str, model_group: str, **kwargs: Any) -> Any:
            index = self.model_id_to_deployment_index_map.get(deployment_id)
            entry = self.model_list[index] if index is not None and index < len(self.model_list) else None
            stamp = (id(self), id(entry), model_group, id(litellm.model_cost), len(litellm.model_cost))
            verdict = known.get(deployment_id)
            if entry is not None and verdict is not None and verdict[0] == stamp:
                if verdict[1] is None:
                    return None
                raise ModelNotMappedError(*verdict[1])
            try:
                result = await original(self, deployment_id=deployment_id, model_group=model_group, **kwargs)
            except ModelNotMappedError as error:
                if entry is not None:
                    known[deployment_id] = (stamp, error.args)
                raise
            if entry is not None and result is None:
                deployment = self.get_deployment(model_id=deployment_id)
                info = self.get_router_model_info(deployment=deployment, received_model_name=model_group)
                limits = (deployment.get("tpm"), deployment.get("rpm"), deployment.litellm_params.tpm,
                          deployment.litellm_params.rpm, info.get("tpm"), info.get("rpm"))
                if all(limit is None for limit in limits) and not deployment_has_io_token_limits(
                        deployment.model_dump()):
                    known[deployment_id] = (stamp, None)
            return result
        return _increment_deployment_usage

    return _wrap(Router, "_increment_deployment_usage", make)


def no_route_toggles_when_unset() -> bool:
    """The enterprise route toggles asked only when one of them is set.

    1.108.7's EnterpriseRouteChecks.should_call_route matches the route against every management
    route pattern (~0.1 ms) before it looks whether DISABLE_ADMIN_ENDPOINTS or
    DISABLE_LLM_API_ENDPOINTS is set; with neither in the environment and no key management system
    (where get_secret_bool could find them elsewhere), it can only return None.
    """
    try:
        import litellm
        from litellm_enterprise.proxy.auth.route_checks import EnterpriseRouteChecks
    except Exception:
        return False

    def make(original: Callable) -> Callable:
        def should_call_route(route: str) -> Any:
            if ("DISABLE_ADMIN_ENDPOINTS" not in os.environ and "DISABLE_LLM_API_ENDPOINTS" not in os.environ
                    and litellm._key_management_system is None):
                return None
            return original(route)
        return should_call_route

    return _wrap(EnterpriseRouteChecks, "should_call_route", make, static=True)


def no_service_events_without_their_callbacks() -> bool:
    """LiteLLM's service events (Redis, auth, router timings) built only for a service callback.

    1.108.7's ServiceLogging.async_service_success_hook builds a payload for each of the ~10 events
    of a request and then loops over litellm.service_callback, empty in the gateway: the events
    have no reader. With a service callback configured, LiteLLM's code runs.
    """
    try:
        import litellm
        from litellm._service_logger import ServiceLogging
    except Exception:
        return False

    def make(original: Callable) -> Callable:
        async def async_service_success_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not litellm.service_callback and not getattr(self, "mock_testing", False):
                return None
            return await original(self, *args, **kwargs)
        return async_service_success_hook

    return _wrap(ServiceLogging, "async_service_success_hook", make)


def skip_unkept_key_gauges() -> bool:
    """Prometheus: the key's remaining-requests and -tokens gauges built only when one is kept.

    1.108.7's PrometheusLogger._set_virtual_key_rate_limit_metrics builds both gauges' labels on every
    success; neither is among the gateway's KEPT_METRICS, so LiteLLM made them no-op metrics.
    """
    try:
        from litellm.integrations.prometheus import PrometheusLogger
        from litellm.types.integrations.prometheus import NoOpMetric
    except Exception:
        return False

    def make(original: Callable) -> Callable:
        def set_key_gauges(self: Any, *args: Any, **kwargs: Any) -> None:
            gauges = (getattr(self, "litellm_remaining_api_key_requests_for_model", None),
                      getattr(self, "litellm_remaining_api_key_tokens_for_model", None))
            if all(isinstance(gauge, NoOpMetric) for gauge in gauges):
                return None
            return original(self, *args, **kwargs)
        return set_key_gauges

    return _wrap(PrometheusLogger, "_set_virtual_key_rate_limit_metrics", make)


def least_busy_counts_per_worker() -> bool:
    """Least-busy routing counts the requests this worker has in flight, in its own memory.

    With a Redis attached to the router (the gateway's coordination Redis, for shared cooldowns),
    1.108.7's LeastBusyLoggingHandler also keeps every count in Redis: a read before each pick, a
    blocking increment in the call's thread before the backend is called, a decrement after: three
    round trips per request, ~1 ms of its latency at one client. Each worker then picks by its own
    counts, as LiteLLM does without Redis; cooldowns and rate limits stay shared.
    """
    try:
        from litellm.caching.dual_cache import DualCache
        from litellm.router_strategy.least_busy import LeastBusyLoggingHandler
    except Exception:
        return False

    def make(original: Callable) -> Callable:
        def __init__(self: Any, router_cache: Any) -> None:
            original(self, router_cache)
            self.router_cache = DualCache(in_memory_cache=router_cache.in_memory_cache)
        return __init__

    return _wrap(LeastBusyLoggingHandler, "__init__", make)


FIXES = (cache_ollama_cost_map_names, skip_unkept_rate_limit_gauges, no_recount_of_counted_answers,
         no_pricing_of_zero_priced_answers, no_usage_counts_for_unlimited_deployments, no_route_toggles_when_unset,
         no_service_events_without_their_callbacks, skip_unkept_key_gauges, least_busy_counts_per_worker)


def apply() -> dict[str, bool]:
    """Every fix, applied where its release matches: {name: applied}."""
    return {fix.__name__: fix() for fix in FIXES}
