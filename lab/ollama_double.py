#!/usr/bin/env python3
"""A faithful double of Ollama's HTTP API, for hosts where Ollama itself cannot be installed.

Standard library only: it runs with the lab host's own python3. It answers the calls LiteLLM,
the preflight checks and the operator tasks make (see shared/reference/ollama-api.md), and a test
steers it through a JSON behaviour file that is re-read whenever it changes:

    {"models": ["phi3:3.8b-mini-128k-instruct-q8_0"],  # tags this backend has pulled
     "token_delay": 0.0,     # seconds per generated token (slow backends, timeouts, least-busy)
     "fail": false,          # every model call answers 500
     "hang": false,          # every model call sleeps until the client gives up
     "reply": "...",         # the text a completion generates, one token per word
     "default_num_ctx": 4096,  # the window a request without options.num_ctx gets (OLLAMA_CONTEXT_LENGTH)
     # The scheduler (below); absent, a key leaves the backend room for everything at once:
     "vram_mib": 24576,      # GPU memory: loaded models must fit in it whole
     "model_sizes_mib": {"mistral:7b": 4170},  # a model's size loaded (defaults: MODEL_SIZES_MIB)
     "load_seconds_per_gib": 0.05,  # a load's time, proportional to the model's size
     "keep_alive": "5m",     # how long an idle model stays loaded (OLLAMA_KEEP_ALIVE; the request's wins)
     "num_parallel": 1,      # requests one loaded model runs at once (OLLAMA_NUM_PARALLEL)
     "max_queue": 512,       # requests waiting at most; beyond, 503 (OLLAMA_MAX_QUEUE)
     "max_loaded_models": 3}  # models loaded at once (OLLAMA_MAX_LOADED_MODELS)

Given `tools`, a chat answer calls those the last user message names (in the order named; none
named: the first tool), with arguments matching each tool's parameters, and writes no text; after
the tools' results it answers in text. The tools' definitions count in the prompt. `format: "json"`
makes the answer a JSON object, a JSON schema an instance of it. `/api/embed` and `/api/embeddings`
give deterministic vectors of the model's dimension (EMBEDDING_DIMENSIONS). As in Ollama, a model
answers only what its capabilities (`/api/show`) say: tools to a model whose template takes none,
images to one without vision, or a chat to an embedding model get 400 with Ollama's message.

`POST /api/pull` adds a model to those the behaviour file lists and `DELETE /api/delete` removes
one, as `ollama pull` and `ollama rm` do (until the double restarts; no bytes are downloaded).

Like Ollama, each request is served with its own context window (`options.num_ctx`, else the
default): a prompt longer than the window is truncated, keeping its first NUM_KEEP tokens and its
end, with Ollama's "truncating input prompt" warning in the log, and `prompt_eval_count` shows
the truncated length. Tokens are counted by `tokenize` below: a word or a sign is one token,
a chat template marker such as <|user|> one more.

Like Ollama's scheduler (shared/reference/ollama-scheduler.md), a model is loaded before its first
request runs (the request waits for the load), stays loaded for its keep-alive after its last
request, runs `num_parallel` requests at once with the rest queued, and is reloaded when a request
asks for another window. A model that does not fit beside the loaded ones first evicts one: an
idle one, else the one whose keep-alive ends soonest, once its requests have finished (a model
chosen to go still takes requests at its window until then). Requests that must load a model take
turns in one queue, in the order they came (server/sched.go processPending). `/api/ps`
lists what is loaded, and an empty prompt loads a model (or, with keep_alive 0, unloads it).

`GET /_double/stats` counts the requests served (load distribution), lists the last model
calls (model, num_ctx as sent, prompt tokens before and after truncation, the options and
keep_alive as sent) and the scheduler's counts (loads and evictions per model, the seconds
requests waited for loads and for slots, requests refused as busy); `POST /_double/reset`
clears them. Neither path exists in Ollama, so no client can mistake them for its API.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = "0.12.3"
# Ollama reports the GGUF architecture as the family: Llama 3.x and Mistral are "llama".
FAMILIES = {"llama3": "llama", "llama3.1": "llama", "llama3.2": "llama", "mistral": "llama"}
DEFAULT_NUM_CTX = 4096  # Ollama 0.12's default context length
NUM_KEEP = 4  # tokens from the start of a prompt kept when it is truncated (Ollama's num_keep)
TOKEN = re.compile(r"\s*<\|\w+\|>|\s*\w+|\s*[^\w\s]")
DEFAULT_REPLY = (
    "The gateway answered through the lab backend and every token arrived in order as expected"
)
# What the seed's models take loaded, in MiB (their size in Ollama's library); another model: 4 GiB.
MODEL_SIZES_MIB = {
    "phi3:3.8b-mini-128k-instruct-q8_0": 3910,
    "llama3:8b": 4480,
    "llama3.1:8b": 4670,
    "mistral:7b": 4170,
    "gemma2:9b": 5150,
}
OTHER_SIZE_MIB = 4096
DEFAULT_KEEP_ALIVE = "5m"  # Ollama's OLLAMA_KEEP_ALIVE
DEFAULT_LOAD_SECONDS_PER_GIB = 0.05  # a 4 GiB model loads in 0.2 s: scaled down from seconds
DEFAULT_MAX_QUEUE = 512  # Ollama's OLLAMA_MAX_QUEUE
BUSY = "server busy, please try again.  maximum pending requests exceeded"  # Ollama's text, two spaces
FOREVER = (2 ** 63 - 1) // 10 ** 9  # seconds: a negative keep_alive keeps it loaded (Go's longest duration)
DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")


class Behaviour:
    """The behaviour file, re-read when its modification time changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime: float | None = None
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self) -> dict[str, Any]:
        with self._lock:
            try:
                mtime = os.stat(self.path).st_mtime
            except FileNotFoundError:
                mtime = None
            if mtime != self._mtime:
                self._mtime = mtime
                self._data = {}
                if mtime is not None:
                    with open(self.path, encoding="utf-8") as handle:
                        self._data = json.load(handle)
            return dict(self._data)


def full_tag(name: str) -> str:
    """A model's tag as Ollama lists it: `name:latest` when no tag is given."""
    return name if ":" in name else f"{name}:latest"


def tokenize(text: str) -> list[str]:
    """The double's tokenizer: a chat template marker, a word or a sign (with its leading space) is one token."""
    return TOKEN.findall(text)


def chat_prompt(messages: list[Any], tools: list[Any] | None = None) -> str:
    """The prompt a chat template makes of the messages, as the model reads it: a model given tools
    reads their definitions first (Ollama's templates render them into the prompt)."""
    parts = [f"<|{m.get('role', 'user')}|>\n{m.get('content') or ''}<|end|>\n" for m in messages if isinstance(m, dict)]
    if tools:
        parts.insert(0, f"<|tools|>\n{json.dumps(tools)}<|end|>\n")
    return "".join(parts) + "<|assistant|>\n"


# The vector size of the embedding models Ollama's library lists; another model's vectors have 8 numbers.
EMBEDDING_DIMENSIONS = {"nomic-embed-text": 768, "mxbai-embed-large": 1024, "all-minilm": 384,
                        "snowflake-arctic-embed": 1024, "bge-m3": 1024}
# What Ollama infers from a model's files (server/images.go Capabilities): its chat template takes
# tools, it has a vision encoder, or it embeds only. The seed's phi3, llama3 and gemma2 take no tools.
TOOL_MODELS = {"llama3.1", "llama3.2", "mistral", "mistral-nemo", "qwen2.5", "qwen3", "command-r", "llama3.3"}
VISION_MODELS = {"llava", "bakllava", "llama3.2-vision", "gemma3", "qwen2.5vl", "minicpm-v", "moondream"}


def capabilities(tag: str) -> list[str]:
    """/api/show's capabilities of a model, by its name."""
    base = tag.split(":", 1)[0]
    if base in EMBEDDING_DIMENSIONS:
        return ["embedding"]
    return ["completion", *(["tools"] if base in TOOL_MODELS else []), *(["vision"] if base in VISION_MODELS else [])]


def missing_capability(tag: str, body: dict[str, Any]) -> str | None:
    """Ollama's 400 for a request the model cannot serve (routes.go: checked before it is scheduled)."""
    have = capabilities(tag)
    if "completion" not in have:
        return f'"{tag}" does not support chat' if "messages" in body else f'"{tag}" does not support generate'
    if body.get("tools") and "tools" not in have:
        return f"{tag} does not support tools"
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    if (body.get("images") or any(isinstance(m, dict) and m.get("images") for m in messages)) and "vision" not in have:
        return f"{tag} does not support vision"
    return None


def embedding(tag: str, text: str) -> list[float]:
    """A deterministic vector for `text` (the same text, the same vector), of the model's dimension."""
    size = EMBEDDING_DIMENSIONS.get(tag.split(":", 1)[0], 8)
    numbers: list[float] = []
    block = text.encode()
    while len(numbers) < size:
        block = hashlib.sha256(block).digest()
        numbers.extend(round(b / 255.0, 4) for b in block)
    return numbers[:size]


def example(schema: Any, hint: str, defs: dict[str, Any] | None = None) -> Any:
    """A value matching a JSON schema (what a model constrained by it writes): every property of an object,
    one item of an array, the first of an enum or of anyOf/oneOf, `hint` for a string; $ref into $defs."""
    if not isinstance(schema, dict):
        return hint
    defs = {**(defs or {}), **(schema.get("$defs") or schema.get("definitions") or {})}
    if isinstance(schema.get("$ref"), str):
        return example(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), hint, defs)
    for choice in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(choice) or [] if not (isinstance(o, dict) and o.get("type") == "null")]
        if options:
            return example(options[0], hint, defs)
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        return {name: example(sub, name, defs) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [example(schema.get("items") or {}, hint, defs)]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, hint)


def tool_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tools a model calls: each tool the last user message names, in the order named (none named: the
    first tool), arguments matching its parameters; none when the last message is a tool's result (the
    model answers it) or no tools were given."""
    tools = [t["function"] for t in body.get("tools") or []
             if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if not tools or not messages or messages[-1].get("role") != "user":
        return []
    asked = str(messages[-1].get("content") or "")
    named = sorted((asked.find(t["name"]), i) for i, t in enumerate(tools) if t.get("name") and t["name"] in asked)
    chosen = [tools[i] for _, i in named] or tools[:1]
    return [{"function": {"name": t.get("name", ""), "arguments": example(t.get("parameters") or {}, "value")}}
            for t in chosen]


def with_calls(piece: dict[str, Any], calls: list[dict[str, Any]]) -> dict[str, Any]:
    """A chat answer's piece carrying the model's tool calls (when it made any)."""
    if calls:
        piece["message"]["tool_calls"] = calls
    return piece


def formatted(format_: Any, reply: str) -> str | None:
    """The content a model writes under `format`: "json" some JSON object, a JSON schema an instance of it;
    None without a format."""
    if format_ == "json":
        return json.dumps({"answer": reply})
    if isinstance(format_, dict):
        return json.dumps(example(format_, reply))
    return None


def fit_to_window(tokens: list[str], num_ctx: int) -> list[str]:
    """What Ollama's runner does with a prompt longer than the window: keep NUM_KEEP, drop the oldest rest."""
    if len(tokens) <= num_ctx:
        return tokens
    discard = len(tokens) - num_ctx
    kept = tokens[:NUM_KEEP] + tokens[NUM_KEEP + discard:]
    sys.stderr.write(f'level=WARN source=runner.go msg="truncating input prompt" limit={num_ctx} '
                     f"prompt={len(tokens)} keep={NUM_KEEP} new={len(kept)}\n")
    sys.stderr.flush()
    return kept


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def model_details(tag: str) -> dict[str, Any]:
    """Details Ollama derives from a model's GGUF header, made up from the tag deterministically."""
    base = tag.split(":", 1)[0]
    family = FAMILIES.get(base, base)
    variant = tag.split(":", 1)[1] if ":" in tag else "latest"
    parts = variant.split("-")
    size = next((p.upper() for p in parts if p[:-1].replace(".", "").isdigit() and p.endswith("b")), "7B")
    quant = next((p.upper() for p in parts if p.startswith("q") and "_" in p), "Q4_0")
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": size,
        "quantization_level": quant,
    }


def size_mib(tag: str, settings: dict[str, Any]) -> int:
    """A model's size loaded, in MiB: the behaviour's model_sizes_mib, else the real model's."""
    return int((settings.get("model_sizes_mib") or {}).get(tag, MODEL_SIZES_MIB.get(tag, OTHER_SIZE_MIB)))


def model_entry(tag: str, settings: dict[str, Any]) -> dict[str, Any]:
    """A model as /api/tags lists it; its file is as large as the model loaded (without a context's cache)."""
    name = tag if ":" in tag else f"{tag}:latest"
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-09-01T00:00:00Z",
        "size": size_mib(name, settings) * 2**20,
        "digest": digest,
        "details": model_details(name),
    }


def keep_alive_seconds(value: Any) -> float:
    """A keep_alive as Ollama takes it: seconds, or a Go duration ("5m", "1h30m"); negative: forever."""
    if isinstance(value, bool):
        raise ValueError(f"invalid keep_alive {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        sign = -1 if text.startswith("-") else 1
        text = text.lstrip("+-")
        if text.replace(".", "", 1).isdigit():
            seconds = float(text)
        else:
            parts = DURATION.findall(text)
            if not parts or "".join(number + unit for number, unit in parts) != text:
                raise ValueError(f'time: invalid duration "{value}"')
            scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
            seconds = sum(float(number) * scale[unit] for number, unit in parts)
        seconds *= sign
    return FOREVER if seconds < 0 else seconds


class Busy(Exception):
    """More requests wait than max_queue allows."""


class Runner:
    """One loaded (or loading) model: its window, its slots, when it may go."""

    def __init__(self, tag: str, num_ctx: int, size_mib: int, ready_at: float) -> None:
        self.tag, self.num_ctx, self.size_mib, self.ready_at = tag, num_ctx, size_mib, ready_at
        self.loading = True
        self.running = 0
        self.keep_alive = keep_alive_seconds(DEFAULT_KEEP_ALIVE)
        self.expires = ready_at + self.keep_alive
        self.unloading = False  # chosen to go: it goes once idle (requests at its window still run on it)

    def expires_at(self) -> str:
        wall = time.time() + (self.expires - time.monotonic())
        return datetime.fromtimestamp(wall, UTC).isoformat().replace("+00:00", "Z")


class Scheduler:
    """Which models are loaded, and who waits for what: Ollama's server/sched.go, in small."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.runners: dict[str, Runner] = {}
        self.queue: deque[object] = deque()  # the requests waiting to load a model, first first
        self.waiting = 0
        self.loads: Counter = Counter()
        self.evictions: Counter = Counter()
        self.load_wait = 0.0
        self.slot_wait = 0.0
        self.busy = 0

    def run(self, tag: str, num_ctx: int, keep_alive: float, settings: dict[str, Any]) -> tuple[Runner, float]:
        """Wait until `tag` is loaded at `num_ctx` with a free slot, and take the slot; the seconds
        waited for a load (0.0 when it was loaded already). As Ollama's getRunner: a model loaded at
        this window serves at once, even one chosen to go (it goes once idle); one to load or reload
        waits its turn in one queue (processPending: the first blocks the others until its load has
        started, waiting for the evicted model's requests to end)."""
        with self.changed:
            if self.waiting >= int(settings.get("max_queue", DEFAULT_MAX_QUEUE)):
                self.busy += 1
                raise Busy(BUSY)
            self.waiting += 1
            since = time.monotonic()
            loaded = False
            ticket = object()
            try:
                while True:
                    now = time.monotonic()
                    self._let_go(now)
                    runner = self.runners.get(tag)
                    if runner is not None and runner.loading and now >= runner.ready_at:
                        runner.loading = False
                        self.loads[tag] += 1
                        self.changed.notify_all()
                    usable = runner is not None and runner.num_ctx == num_ctx
                    if not usable and ticket not in self.queue:
                        self.queue.append(ticket)
                    if usable:
                        self._leave(ticket)
                        if runner.loading:
                            loaded = True
                        elif runner.running < int(settings.get("num_parallel") or 1 << 30):
                            runner.running += 1
                            runner.keep_alive = keep_alive
                            waited = time.monotonic() - since
                            if loaded:
                                self.load_wait += waited
                            else:
                                self.slot_wait += waited
                            return runner, waited if loaded else 0.0
                    elif self.queue[0] is ticket:
                        loaded = True
                        if runner is None:
                            if self._load_or_evict(tag, num_ctx, settings, now):
                                continue
                        elif not runner.loading and not runner.unloading:  # another window: it goes, then loads again
                            runner.unloading = True
                            self._let_go(now)
                            continue
                    wake = [r.ready_at - now for r in self.runners.values() if r.loading and r.ready_at > now]
                    self.changed.wait(min([0.5, *wake]))
            finally:
                self._leave(ticket)
                self.waiting -= 1

    def _leave(self, ticket: object) -> None:
        """A request out of the load queue: the next one's turn."""
        if ticket in self.queue:
            self.queue.remove(ticket)
            self.changed.notify_all()

    def done(self, runner: Runner, keep_alive: float) -> None:
        """A request on `runner` ended: its keep-alive starts again from now."""
        with self.changed:
            runner.running -= 1
            runner.keep_alive = keep_alive
            runner.expires = time.monotonic() + keep_alive
            self._let_go(time.monotonic())
            self.changed.notify_all()

    def preload(self, tag: str, num_ctx: int, keep_alive: float, settings: dict[str, Any]) -> None:
        """An empty prompt: load the model (or, with keep_alive 0, unload it once idle)."""
        if keep_alive == 0:
            with self.changed:
                runner = self.runners.get(tag)
                if runner is not None:
                    runner.unloading = True
                    self._let_go(time.monotonic())
                    self.changed.notify_all()
            return
        self.done(self.run(tag, num_ctx, keep_alive, settings)[0], keep_alive)

    def loaded(self) -> list[Runner]:
        with self.changed:
            now = time.monotonic()
            self._let_go(now)
            for runner in self.runners.values():
                if runner.loading and now >= runner.ready_at:
                    runner.loading = False
                    self.loads[runner.tag] += 1
            return sorted((r for r in self.runners.values() if not r.loading), key=lambda r: r.tag)

    def counts(self) -> dict[str, Any]:
        with self.changed:
            return {"loads": dict(self.loads), "evictions": dict(self.evictions),
                    "load_wait_seconds": round(self.load_wait, 3), "slot_wait_seconds": round(self.slot_wait, 3),
                    "busy": self.busy, "waiting": self.waiting}

    def reset_counts(self) -> None:
        with self.changed:
            self.loads.clear()
            self.evictions.clear()
            self.load_wait = self.slot_wait = 0.0
            self.busy = 0

    # --- under the lock ---------------------------------------------------------------------
    def _let_go(self, now: float) -> None:
        """Unload what is idle and either chosen to go or past its keep-alive."""
        for tag, runner in list(self.runners.items()):
            if runner.running or runner.loading:
                continue
            if runner.unloading or now >= runner.expires:
                del self.runners[tag]
                self.changed.notify_all()

    def _load_or_evict(self, tag: str, num_ctx: int, settings: dict[str, Any], now: float) -> bool:
        """Start loading `tag` if it fits; else choose one to go (findRunnerToUnload). Whether
        anything changed (a load started, a model went): if not, the caller waits."""
        size = size_mib(tag, settings)
        vram = settings.get("vram_mib")
        most = int(settings.get("max_loaded_models") or 0)
        used = sum(r.size_mib for r in self.runners.values())
        fits = (vram is None or used + size <= int(vram) or not self.runners) and (
            not most or len(self.runners) < most)
        if fits:
            seconds = size / 1024 * float(settings.get("load_seconds_per_gib", DEFAULT_LOAD_SECONDS_PER_GIB))
            self.runners[tag] = Runner(tag, num_ctx, size, now + seconds)
            return True
        if any(r.unloading for r in self.runners.values()):
            return False  # one is going already: wait for it
        candidates = [r for r in self.runners.values() if not r.loading]
        if not candidates:
            return False
        # Sorted by keep-alive, then name; the first idle one, else the first (it goes once its requests end).
        idle = [r for r in candidates if not r.running]
        victim = min(idle or candidates, key=lambda r: (r.keep_alive, r.tag))
        victim.unloading = True
        self.evictions[victim.tag] += 1
        self._let_go(now)
        return victim.tag not in self.runners


class OllamaHandler(BaseHTTPRequestHandler):
    server_version = "ollama-double"
    protocol_version = "HTTP/1.1"
    # Ollama's Go server sends every write at once (Go's TCP connections default to TCP_NODELAY).
    # Without it, a reply's headers and body are two small writes, and on a kept-alive connection
    # the body waits for the client's delayed ACK: 40 ms a call that Ollama does not have.
    disable_nagle_algorithm = True
    behaviour: Behaviour
    stats: Counter
    stats_lock = threading.Lock()

    # --- plumbing -------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _count(self) -> None:
        with self.stats_lock:
            self.stats[f"{self.command} {self.path.split('?', 1)[0]}"] += 1

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, status: int, text: str, head_only: bool = False) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def _read_json(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            self._send_json(400, {"error": "invalid character in request body"})
            return None
        if not isinstance(body, dict):
            self._send_json(400, {"error": "invalid request body"})
            return None
        return body

    def _chunk(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # --- models ---------------------------------------------------------------------------
    def _models(self) -> list[str]:
        listed = [full_tag(t) for t in self.behaviour.get().get("models", [])]
        changed = self.server.pulled  # type: ignore[attr-defined]  # tag -> True pulled, False deleted
        pulled = [t for t, kept in changed.items() if kept and t not in listed]
        return [t for t in listed if changed.get(t, True)] + pulled

    def _pull(self, body: dict[str, Any]) -> None:
        """`ollama pull`: the model is there afterwards; progress lines as Ollama streams them."""
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            self._send_json(400, {"error": "model is required"})
            return
        self.server.pulled[full_tag(name)] = True  # type: ignore[attr-defined]
        steps = ["pulling manifest", "verifying sha256 digest", "writing manifest", "success"]
        if body.get("stream") is False:
            self._send_json(200, {"status": "success"})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for step in steps:
            self._chunk({"status": step})
        self.wfile.write(b"0\r\n\r\n")

    def do_DELETE(self) -> None:
        """`ollama rm`: 200 without a body, 404 for a model that is not there."""
        self._count()
        if self.path.split("?", 1)[0] != "/api/delete":
            self._send_text(404, "404 page not found")
            return
        body = self._read_json()
        if body is None:
            return
        name = body.get("model") or body.get("name")
        tag = self._find(name) if isinstance(name, str) and name else None
        if tag is None:
            self._send_json(404, {"error": f"model '{name}' not found"})
            return
        self.server.pulled[tag] = False  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _find(self, name: str) -> str | None:
        wanted = full_tag(name)
        return wanted if wanted in self._models() else None

    # --- routes ---------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._count()
        if self.path == "/":
            self._send_text(200, "Ollama is running", head_only=True)
        else:
            self._send_text(404, "404 page not found", head_only=True)

    def do_GET(self) -> None:
        self._count()
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send_text(200, "Ollama is running")
        elif path == "/api/version":
            self._send_json(200, {"version": VERSION})
        elif path == "/api/tags":
            settings = self.behaviour.get()
            self._send_json(200, {"models": [model_entry(t, settings) for t in self._models()]})
        elif path == "/api/ps":
            self._send_json(200, {"models": self._loaded()})
        elif path == "/_double/stats":
            with self.stats_lock:
                self._send_json(200, {"requests": dict(self.stats),
                                      "calls": list(self.server.calls),  # type: ignore[attr-defined]
                                      "scheduler": self.server.scheduler.counts()})  # type: ignore[attr-defined]
        else:
            self._send_text(404, "404 page not found")

    def do_POST(self) -> None:
        self._count()
        path = self.path.split("?", 1)[0]
        routes = {
            "/api/show": self._show,
            "/api/chat": self._chat,
            "/api/generate": self._generate,
            "/api/embed": self._embed,
            "/api/embeddings": self._embeddings,
            "/api/pull": self._pull,
            "/_double/reset": self._reset,
        }
        route = routes.get(path)
        if route is None:
            self._send_text(404, "404 page not found")
            return
        body = self._read_json()
        if body is not None:
            route(body)

    def _loaded(self) -> list[dict[str, Any]]:
        out = []
        for runner in self.server.scheduler.loaded():  # type: ignore[attr-defined]
            entry = model_entry(runner.tag, {})
            entry.pop("modified_at")
            size = runner.size_mib * 1024 * 1024
            entry.update(size=size, expires_at=runner.expires_at(), size_vram=size, context_length=runner.num_ctx)
            out.append(entry)
        return out

    def _reset(self, _body: dict[str, Any]) -> None:
        with self.stats_lock:
            self.stats.clear()
            self.server.calls.clear()  # type: ignore[attr-defined]
        self.server.scheduler.reset_counts()  # type: ignore[attr-defined]
        self._send_json(200, {"status": "reset"})

    def _show(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name")
        if not name:
            self._send_json(400, {"error": "model is required"})
            return
        tag = self._find(name)
        if tag is None:
            self._send_json(404, {"error": f"model '{name}' not found"})
            return
        details = model_details(tag)
        self._send_json(
            200,
            {
                "modelfile": f"FROM {tag}\n",
                "parameters": "stop \"<|end|>\"",
                "template": "{{ .Prompt }}",
                "details": details,
                "model_info": {f"{details['family']}.context_length": 131072},
                "capabilities": capabilities(tag),
            },
        )

    def _embed(self, body: dict[str, Any]) -> None:
        tag = self._model_or_error(body)
        if tag is None:
            return
        inputs = body.get("input") or []
        inputs = [inputs] if isinstance(inputs, str) else inputs
        self._send_json(200, {"model": tag, "embeddings": [embedding(tag, str(text)) for text in inputs],
                              "total_duration": 2_000_000, "load_duration": 1_000_000,
                              "prompt_eval_count": sum(len(tokenize(str(text))) for text in inputs)})

    def _embeddings(self, body: dict[str, Any]) -> None:
        """The older single-prompt endpoint: {model, prompt} -> {embedding}."""
        tag = self._model_or_error(body)
        if tag is None:
            return
        self._send_json(200, {"embedding": embedding(tag, str(body.get("prompt") or ""))})

    def _model_or_error(self, body: dict[str, Any]) -> str | None:
        name = body.get("model")
        if not name:
            self._send_json(400, {"error": "model is required"})
            return None
        tag = self._find(name)
        if tag is None:
            self._send_json(404, {"error": f'model "{name}" not found, try pulling it first'})
            return None
        return tag

    def _chat(self, body: dict[str, Any]) -> None:
        if not isinstance(body.get("messages", []), list):
            self._send_json(400, {"error": "messages must be a list"})
            return
        self._complete(body, lambda text: {"message": {"role": "assistant", "content": text}})

    def _generate(self, body: dict[str, Any]) -> None:
        self._complete(body, lambda text: {"response": text}, final_extra={"context": [1, 2, 3]})

    def _complete(self, body: dict[str, Any], piece, final_extra: dict[str, Any] | None = None) -> None:
        tag = self._model_or_error(body)
        if tag is None:
            return
        refused = missing_capability(tag, body)
        if refused:
            self._send_json(400, {"error": refused})
            return
        behaviour = self.behaviour.get()
        if behaviour.get("hang"):
            time.sleep(3600)
            return
        if behaviour.get("fail"):
            self._send_json(500, {"error": "llama runner process has terminated: exit status 2"})
            return
        options = body.get("options") or {}
        sent_ctx = options.get("num_ctx")
        num_ctx = (sent_ctx if isinstance(sent_ctx, int) and sent_ctx > 0
                   else int(behaviour.get("default_num_ctx", DEFAULT_NUM_CTX)))
        try:
            keep_alive = keep_alive_seconds(body["keep_alive"] if body.get("keep_alive") is not None
                                            else behaviour.get("keep_alive", DEFAULT_KEEP_ALIVE))
        except ValueError as error:
            self._send_json(400, {"error": str(error)})
            return
        scheduler: Scheduler = self.server.scheduler  # type: ignore[attr-defined]
        if not (body.get("messages") if "messages" in body else body.get("prompt")):
            # Nothing to say: Ollama loads the model (or unloads it, keep_alive 0) and answers at once.
            try:
                scheduler.preload(tag, num_ctx, keep_alive, behaviour)
            except Busy as busy:
                self._send_json(503, {"error": str(busy)})
                return
            reason = "unload" if keep_alive == 0 else "load"
            self._send_json(200, {"model": tag, "created_at": _now(), **piece(""), "done_reason": reason,
                                  "done": True})
            return
        try:
            runner, load_seconds = scheduler.run(tag, num_ctx, keep_alive, behaviour)
        except Busy as busy:
            self._send_json(503, {"error": str(busy)})
            return
        try:
            self._generate_on(runner, tag, body, behaviour, options, sent_ctx, num_ctx, load_seconds, piece,
                              final_extra)
        finally:
            scheduler.done(runner, keep_alive)

    def _generate_on(self, runner: Runner, tag: str, body: dict[str, Any], behaviour: dict[str, Any],
                     options: dict[str, Any], sent_ctx: Any, num_ctx: int, load_seconds: float, piece,
                     final_extra: dict[str, Any] | None) -> None:
        """The completion itself, on a slot of a loaded model."""
        prompt = (chat_prompt(body.get("messages") or [], body.get("tools")) if "messages" in body
                  else str(body.get("prompt") or ""))
        whole = tokenize(prompt)
        read = fit_to_window(whole, num_ctx)
        with self.stats_lock:
            self.server.calls.append({"model": tag, "num_ctx": sent_ctx,  # type: ignore[attr-defined]
                                      "prompt_tokens": len(whole), "prompt_eval_count": len(read),
                                      "num_predict": options.get("num_predict"),
                                      "stream": bool(body.get("stream", True)), "options": options,
                                      "keep_alive": body.get("keep_alive")})
        limit = options.get("num_predict")
        reply = str(behaviour.get("reply", DEFAULT_REPLY))
        calls = tool_calls(body) if "messages" in body else []
        # A model calling tools writes no text; under a format it writes JSON (split where it has spaces,
        # each piece a token: joined again, the same JSON).
        words = [] if calls else (formatted(body.get("format"), reply) or reply).split()
        done_reason = "stop"
        if isinstance(limit, int) and 0 <= limit < len(words):
            words, done_reason = words[:limit], "length"
        tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
        delay = float(behaviour.get("token_delay", 0.0))
        started = time.monotonic_ns()
        prompt_tokens = len(read)

        def stats() -> dict[str, Any]:
            total = time.monotonic_ns() - started
            return {
                "done": True,
                "done_reason": done_reason,
                "total_duration": total,
                "load_duration": max(int(load_seconds * 1e9), 1_000_000),
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": 2_000_000,
                "eval_count": len(json.dumps(calls).split()) if calls else len(tokens),
                "eval_duration": max(total - 3_000_000, 1),
                **(final_extra or {}),
            }

        if body.get("stream", True):
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for token in tokens:
                    if delay:
                        time.sleep(delay)
                    self._chunk({"model": tag, "created_at": _now(), **piece(token), "done": False})
                if calls:  # the calls in one piece of their own, as Ollama streams them once parsed
                    if delay:
                        time.sleep(delay)
                    called = with_calls(piece(""), calls)
                    self._chunk({"model": tag, "created_at": _now(), **called, "done": False})
                self._chunk({"model": tag, "created_at": _now(), **piece(""), **stats()})
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        if delay:
            time.sleep(delay * max(len(tokens), 1 if calls else 0))
        answer = with_calls(piece("".join(tokens)), calls)
        self._send_json(200, {"model": tag, "created_at": _now(), **answer, **stats()})


def serve(host: str, port: int, behaviour_file: str) -> ThreadingHTTPServer:
    handler = type("Handler", (OllamaHandler,), {"behaviour": Behaviour(behaviour_file), "stats": Counter()})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Ollama accepts many connections at once; the stdlib default backlog of 5 drops SYNs under load.
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True,
                                                          "request_queue_size": 128})
    server = server_class((host, port), handler)
    server.scheduler = Scheduler()  # type: ignore[attr-defined]
    server.calls = deque(maxlen=200)  # type: ignore[attr-defined]
    server.pulled = {}  # type: ignore[attr-defined]  # tag -> True (pulled) or False (deleted)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("OLLAMA_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--behaviour", default="/etc/ollama-double.json")
    args = parser.parse_args(argv)
    server = serve(args.host, args.port, args.behaviour)
    print(f"Listening on {args.host}:{args.port} (version {VERSION})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
