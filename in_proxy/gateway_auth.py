"""LiteLLM hooks installed next to config.yaml as gateway_auth.py: who may call, and within which limits.

The proxy imports this module at start-up (custom_auth), in every worker; importing it applies the
pinned LiteLLM's speed fixes (in_proxy/release_fixes.py).

- `user_api_key_auth` (general_settings.custom_auth): the master key is the operators' key (all
  routes), and while it is rotated so is the key it replaces (known here by its SHA-256 only); a
  team key is looked up by its SHA-256 in team-keys.json, re-read whenever the file changes (no
  restart), and may call the model routes only; any other key gets 401. The team's rpm and
  max_parallel_requests go to LiteLLM's own limiters (429 with Retry-After).
- `request_limits` (litellm_settings.callbacks), before any backend is called:
  - the model's context window: a prompt whose tokens (LiteLLM's count, raised by a margin) plus
    the requested max_tokens exceed the window is refused with OpenAI's own 400
    `context_length_exceeded`, where Ollama would cut it short in silence; a client's own
    `num_ctx` is dropped (the deployment's applies); an answer may not run past the window;
  - tool definitions and a response_format's JSON schema count as prompt; each input of an
    embedding request must fit the embedding model's window (Ollama would cut it short);
  - max_tokens / max_completion_tokens must be whole numbers from 1 (else 400);
  - what no Ollama model can do (n > 1, logprobs, a forced tool_choice, images to a model that is
    not a vision model, images by URL) is refused with 400 instead of dropped (in_proxy/ollama_fit.py);
  - a team key's limits: a request asking for more than the key's max_tokens is refused with
    400, naming the limit (silently cutting an answer short would look like a model fault); a
    request that asks for no limit gets the key's; the call's timeout is at most the key's;
    Ollama's own fields (num_predict, keep_alive, options, ...) are dropped, so none of them can
    lift a limit or a deployment's setting.

Without a database LiteLLM answers a wrong `sk-...` key with 400 "No connected db."; clients and
the OpenAI SDK expect 401, which this gives. Runs inside the proxy: standard library and LiteLLM.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import threading
from typing import Any
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import LitellmUserRoles, ProxyErrorTypes, ProxyException, UserAPIKeyAuth

from in_proxy import ollama_fit, release_fixes
from in_proxy.residency import Residency, backend_of, deployment_target

MASTER_KEY_VAR = "LITELLM_MASTER_KEY"
PREVIOUS_KEY_VAR = "LITELLM_PREVIOUS_MASTER_KEY_SHA256"  # litellm_previous_master_key, while a rotation rolls
KEYS_FILE_VAR = "LITELLM_TEAM_KEYS_FILE"
CONTEXT_CHECK_VAR = "GATEWAY_CONTEXT_CHECK"  # "1": refuse a prompt over the window (litellm_context_check)
CONTEXT_MARGIN_VAR = "GATEWAY_CONTEXT_MARGIN"  # percent added to the token count (litellm_context_margin)
# litellm_residency_routing: unset or 0, off; N, on, and a warm backend running N requests of this
# worker lets the others in (in_proxy/residency.py).
RESIDENCY_VAR = "GATEWAY_RESIDENCY_SPILL"
GENERATING_CALLS = {"completion", "acompletion", "text_completion", "atext_completion"}
EMBEDDING_CALLS = {"embeddings", "aembedding", "embedding"}
INLINE_COUNT_CHARS = 4000  # a prompt (with its tools) this long or shorter is counted on the event loop
# What a team key may call: the OpenAI-compatible model routes, nothing that manages the proxy.
TEAM_ROUTES = {
    "/chat/completions", "/v1/chat/completions", "/completions", "/v1/completions",
    "/embeddings", "/v1/embeddings", "/models", "/v1/models",
}


class _TeamKeys:
    """hash -> team entry, from the keys file, reloaded when its mtime or size changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._keys: dict[str, dict[str, Any]] = {}

    def get(self, digest: str) -> dict[str, Any] | None:
        path = os.environ.get(KEYS_FILE_VAR, "")
        try:
            info = os.stat(path)
            stamp = (info.st_mtime, info.st_size)
        except OSError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                keys: dict[str, dict[str, Any]] = {}
                if stamp is not None:
                    with open(path, encoding="utf-8") as handle:
                        keys = json.load(handle).get("keys", {})
                self._keys, self._stamp = keys, stamp
            return self._keys.get(digest)


TEAM_KEYS = _TeamKeys()


def _refuse(message: str, code: int = 401) -> ProxyException:
    return ProxyException(message=message, type=ProxyErrorTypes.auth_error, param="api_key", code=code)


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    master = os.environ.get(MASTER_KEY_VAR, "")
    presented = (api_key or "").removeprefix("Bearer ").strip()
    if not presented:
        raise _refuse("No API key was sent: pass 'Authorization: Bearer <key>'.")
    if master and hmac.compare_digest(presented.encode(), master.encode()):
        return UserAPIKeyAuth(api_key=presented, user_role=LitellmUserRoles.PROXY_ADMIN)
    digest = hashlib.sha256(presented.encode()).hexdigest()
    previous = os.environ.get(PREVIOUS_KEY_VAR, "")
    if previous and hmac.compare_digest(digest.encode(), previous.encode()):
        return UserAPIKeyAuth(api_key=digest, user_role=LitellmUserRoles.PROXY_ADMIN)
    team = TEAM_KEYS.get(digest)
    if team is None:
        raise _refuse("Invalid API key.")
    if request.url.path.rstrip("/") not in TEAM_ROUTES:
        raise _refuse(f"A team key may not call {request.url.path}.", code=403)
    return UserAPIKeyAuth(
        api_key=digest,
        key_alias=team["team"],
        team_id=team["team"],
        user_role=LitellmUserRoles.INTERNAL_USER,
        rpm_limit=team["rpm"],
        max_parallel_requests=team["max_parallel_requests"],
        metadata={"gateway_max_tokens": team["max_tokens"], "gateway_timeout": team["timeout"]},
    )


class ContextLengthExceeded(ProxyException):
    """OpenAI's own answer to a prompt that does not fit: 400, code "context_length_exceeded".

    LiteLLM's ProxyException serialises its HTTP status as the code; clients (the OpenAI SDK's
    BadRequestError.code) look for this one."""

    def to_dict(self) -> dict:
        body = super().to_dict()
        body["code"] = "context_length_exceeded"
        return body


def _deployments(model_name: Any) -> list[dict]:
    """The router's deployments of a public model name."""
    from litellm.proxy.proxy_server import llm_router

    if llm_router is None or not isinstance(model_name, str):
        return []
    return llm_router.get_model_list(model_name=model_name) or []


def _windows(deployments: list[dict]) -> list[int]:
    """The windows (num_ctx) the deployments are served with."""
    return [d["litellm_params"]["num_ctx"] for d in deployments
            if isinstance(d.get("litellm_params", {}).get("num_ctx"), int)]


def _schema(data: dict) -> str | None:
    """The JSON schema a response_format asks for, as the backend receives it (Ollama's `format`)."""
    wanted = data.get("response_format")
    if not isinstance(wanted, dict) or wanted.get("type") != "json_schema":
        return None
    schema = (wanted.get("json_schema") or {}).get("schema")
    return json.dumps(schema) if schema is not None else None


def _raised(counted: int) -> int:
    """A count raised by the gateway's margin (LiteLLM's cl100k counts fewer than these models do)."""
    return math.ceil(counted * (100 + int(os.environ.get(CONTEXT_MARGIN_VAR, "25"))) / 100)


async def _prompt_tokens(data: dict) -> int:
    """LiteLLM's count of the prompt (cl100k for Ollama models), the tools' definitions and a
    response_format's schema included, raised by the gateway's margin."""
    import litellm

    if "messages" in data:
        count = (litellm.token_counter, {"messages": data.get("messages") or [], "tools": data.get("tools"),
                                         "use_default_image_token_count": True})
    else:
        count = (litellm.token_counter, {"text": str(data.get("prompt") or "")})
    # A short prompt is counted at once (tens of microseconds); handing it to a thread costs more than
    # that and delays the request. A long one is counted on a thread, the event loop serving on.
    if len(str(count[1])) <= INLINE_COUNT_CHARS:
        counted = count[0](**count[1])
    else:
        counted = await asyncio.to_thread(count[0], **count[1])
    schema = _schema(data)
    if schema is not None:
        counted += await asyncio.to_thread(litellm.token_counter, text=schema)
    return _raised(counted)


# Ollama's own request fields and options. LiteLLM passes every top-level field it does not know
# into the backend's `options` (where it beats the mapped max_tokens), and `keep_alive` to Ollama's
# top level: a team key's request loses all of them, so its limits and the deployment's settings hold.
OLLAMA_FIELDS = frozenset({
    "options", "keep_alive", "format", "think", "raw", "template", "system", "context", "images",
    "num_keep", "num_predict", "num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "num_gqa",
    "numa", "low_vram", "vocab_only", "use_mmap", "use_mlock", "top_k", "min_p", "typical_p",
    "repeat_last_n", "repeat_penalty", "penalize_newline", "mirostat", "mirostat_tau", "mirostat_eta",
    "tfs_z",
})
ANSWER_FIELDS = ("max_tokens", "max_completion_tokens")


def _bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail=message)


def no_image_fetches(messages: Any) -> None:
    """LiteLLM sizes an image whose `detail` is "high" by downloading it from its URL (a request from the
    gateway to an address the client picked), whenever it counts a prompt's tokens. Ollama ignores
    `detail`: it is dropped, so no count ever fetches (the router's context check counts too)."""
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            image = part.get("image_url") if isinstance(part, dict) else None
            if isinstance(image, dict):
                image.pop("detail", None)


def asked_tokens(data: dict, limit: int | None) -> int | None:
    """The answer length the request asks for (None: not said); 400 unless each field given is a whole
    number from 1 to the key's limit (a float, -1 or 0 would reach Ollama as no limit at all)."""
    asked = None
    for field in ANSWER_FIELDS:
        value = data.get(field)
        if value is None:
            continue
        whole = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if limit is not None and not (whole and value <= limit):
            raise _bad_request(f"{field}={value!r} is not allowed: this key's limit of {limit} tokens per request "
                               f"takes a whole number from 1 to {limit}; ask for {limit} or fewer.")
        if not whole:
            raise _bad_request(f"{field}={value!r} is not allowed: ask for a whole number of tokens from 1.")
        # Both given: LiteLLM sends Ollama one of them; the window must hold the longer.
        asked = value if asked is None else max(asked, value)
    return asked


class RequestLimits(CustomLogger):
    """Before any backend is called: the model's context window, then the team key's limits."""

    async def async_pre_call_hook(self, user_api_key_dict: UserAPIKeyAuth, cache: Any, data: dict, call_type: str):
        metadata = user_api_key_dict.metadata or {}
        limit = metadata.get("gateway_max_tokens")  # None for the master key: no per-key limits
        asked = asked_tokens(data, limit)
        no_image_fetches(data.get("messages"))
        deployments = _deployments(data.get("model")) if call_type in GENERATING_CALLS | EMBEDDING_CALLS else []
        if call_type in GENERATING_CALLS:
            try:
                ollama_fit.check(data, vision=bool(deployments) and all(
                    (d.get("model_info") or {}).get("supports_vision") for d in deployments))
            except ollama_fit.Unfit as unfit:
                raise _bad_request(str(unfit)) from None
        if limit is not None:
            for field in OLLAMA_FIELDS & data.keys():
                del data[field]
        # The window is the deployment's (num_ctx in config.yaml): a client cannot make a backend
        # load the model with another one.
        data.pop("num_ctx", None)
        room = None
        if call_type in GENERATING_CALLS and os.environ.get(CONTEXT_CHECK_VAR, "1") == "1":
            room = await self._room(data, asked, _windows(deployments))
        if call_type in EMBEDDING_CALLS and os.environ.get(CONTEXT_CHECK_VAR, "1") == "1":
            await self._inputs_fit(data, _windows(deployments))
        if asked is None and call_type in GENERATING_CALLS:
            # An answer may not run past the window either (Ollama would drop the prompt's start
            # to make room): at most what is left of it, and at most the key's limit.
            caps = [c for c in (limit, room) if c is not None]
            if caps:
                data["max_tokens"] = min(caps)
        if limit is not None:
            timeout = metadata["gateway_timeout"]
            asked_timeout = data.get("timeout")
            if not isinstance(asked_timeout, (int, float)) or asked_timeout > timeout:
                data["timeout"] = timeout
        return data

    @staticmethod
    async def _inputs_fit(data: dict, windows: list[int]) -> None:
        """Each input of an embedding request within the model's window: Ollama would embed its start only."""
        import litellm

        if not windows:
            return
        inputs = data.get("input")
        texts = [inputs] if isinstance(inputs, str) else inputs if isinstance(inputs, list) else []
        window = max(windows)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                continue  # token ids: LiteLLM turns them back into text itself
            tokens = _raised(await asyncio.to_thread(litellm.token_counter, text=text))
            if tokens > window:
                raise ContextLengthExceeded(
                    message=(f"This model's maximum context length is {window} tokens, however you requested "
                             f"{tokens} tokens in input[{index}]. Please reduce the length of the input."),
                    type="invalid_request_error", param="input", code=400,
                )

    @staticmethod
    async def _room(data: dict, asked: int | None, windows: list[int]) -> int | None:
        """Tokens left for the answer in the largest window of the model; refuse when the request does not fit."""
        if not windows:
            return None
        window = max(windows)  # where windows differ, LiteLLM's pre-call checks pick a deployment it fits
        prompt = await _prompt_tokens(data)
        answer = asked or 0
        if prompt + max(answer, 1) > window:
            raise ContextLengthExceeded(
                message=(f"This model's maximum context length is {window} tokens. However, you requested "
                         f"{prompt + answer} tokens ({prompt} in the messages, {answer} in the completion). "
                         "Please reduce the length of the messages or completion."),
                type="invalid_request_error", param="messages", code=400,
            )
        return window - prompt


    # Residency routing (in_proxy/residency.py): the router's candidates narrowed to the backends
    # holding the model loaded; requests counted per backend as LiteLLM's least-busy counts them.

    async def async_filter_deployments(self, model: str, healthy_deployments: list, messages: Any,
                                       request_kwargs: dict | None = None, parent_otel_span: Any = None) -> list:
        residency = await _residency_known()
        return residency.choose(healthy_deployments) if residency else healthy_deployments

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict) -> None:
        residency, target = _residency(), _called(kwargs)
        if residency and target:
            counter = _routed()
            if counter is not None:
                counter.labels(backend=urlsplit(target[0]).netloc or target[0], model=target[1],
                               residency="warm" if residency.warm(*target, None) else "cold").inc()
            residency.started(*target)

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._finished(kwargs)

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._finished(kwargs)

    @staticmethod
    def _finished(kwargs: dict) -> None:
        residency, target = _residency(), _called(kwargs)
        if residency and target:
            residency.finished(*target)


_RESIDENCY: list = []  # this worker's Residency, made (and its poller started) on the first request
_ROUTED: list = []  # its Prometheus counter, made with it (the instance's metrics gather every worker's)


def _routed() -> Any:
    """gateway_routed_requests_total{backend, model, residency}: requests residency routing sent to a
    backend holding their model ("warm") or not ("cold": a load there; the BackendThrashing alert).
    None when it cannot be made: counting never stands in a request's way."""
    if not _ROUTED:
        try:
            from prometheus_client import REGISTRY, Counter

            try:
                counter = Counter("gateway_routed_requests", "Requests sent to an Ollama backend by residency "
                                  "routing, with their model loaded there (warm) or not (cold)",
                                  ["backend", "model", "residency"])
            except ValueError:  # registered by another load of this module in the same process
                counter = REGISTRY._names_to_collectors["gateway_routed_requests"]
        except Exception:
            counter = None
        _ROUTED.append(counter)
    return _ROUTED[0]


def _residency() -> Residency | None:
    spill = os.environ.get(RESIDENCY_VAR, "0")
    if spill == "0" or not spill.isdigit():
        return None
    if not _RESIDENCY:
        _RESIDENCY.append(Residency(spill_at=int(spill)))
        # LiteLLM calls log_pre_api_call on its input callbacks only (as the router registers least-busy).
        import litellm

        if request_limits not in litellm.input_callback:
            litellm.logging_callback_manager.add_litellm_input_callback(request_limits)
    return _RESIDENCY[0]


async def _residency_known() -> Residency | None:
    """This worker's Residency; its first request waits for the backends' first answers (at most
    ASK_TIMEOUT, once), then a poller keeps them current."""
    residency = _residency()
    if residency and len(_RESIDENCY) == 1:
        _RESIDENCY.append(None)  # the poller's place: taken before the await, so it starts once
        await residency.poll(_api_bases())
        _RESIDENCY[1] = asyncio.get_running_loop().create_task(residency.keep_polling(_api_bases))
    return residency


def _api_bases() -> set[str]:
    """Every Ollama backend the router sends to (read again at each poll: a config reload may change them)."""
    from litellm.proxy.proxy_server import llm_router

    targets = (deployment_target(d) for d in (llm_router.model_list if llm_router else []))
    return {target[0] for target in targets if target}


def _called(kwargs: dict) -> tuple[str, str] | None:
    """(api_base, tag) of the deployment a call went to, from LiteLLM's logging kwargs."""
    params = kwargs.get("litellm_params") or {}
    api_base, model = params.get("api_base"), kwargs.get("model") or ""
    if not api_base or not model:
        return None
    tag = model.split("/", 1)[1] if model.startswith(("ollama/", "ollama_chat/")) else model
    return backend_of(api_base), tag


request_limits = RequestLimits()


# The pinned release's speed fixes (in_proxy/release_fixes.py), applied once the hook is loaded.
release_fixes.apply()
