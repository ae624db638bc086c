"""Which Ollama backend holds which model loaded, and the rule that sends a request there.

An Ollama server keeps a few models in GPU memory; a request for one that is not loaded waits for
a load (seconds to minutes), and on a full GPU first evicts another model, whose next request then
waits in turn. LiteLLM's routers count requests in flight, not residency. This narrows a model's
deployments, before the router picks among them (its least-busy rule breaks the tie):

1. warm: the backends holding the model loaded at the deployment's window (`/api/ps`), running
   (or loading it for) a request of this worker, or that finished one since `/api/ps` was last
   asked (it is loaded there, the next answer will say so);
2. while every warm backend already runs `spill_at` requests of this worker, the others with room
   to load it too: a popular model then loads on a second backend instead of queueing behind one,
   never by evicting another model;
3. no warm backend: one with room to load it (fewer models loaded than the most it was seen
   holding at once: Ollama does not report its memory), the one with the most room, else one where
   the model Ollama would evict is worth least: loaded on another backend too (it stays warm there),
   else the least asked for among this worker's last DEMAND_WINDOW requests, one running no request
   of this worker before one whose requests the load must wait for. Among equals, the first by a
   hash of model and backend (rendezvous hashing): every worker and gateway picks the same one, so
   a cold model is loaded once, not once per worker, and different models spread over the backends.
   Ollama's scheduler evicts, among the models running no request, the first by keep-alive
   duration, then by name (shared/reference/ollama-scheduler.md): with one keep-alive for all, the
   first by name, a model kept loaded (keep_alive -1: an expiry centuries away) last; when every
   one runs a request, the first of them all, once its requests end.
   What a worker sends counts at once: a cold model sent to a full backend is loaded there and the
   model Ollama evicts for it gone, until the next `/api/ps` answer says what is.

What each backend holds is asked every POLL_SECONDS, of every backend at once, each with a short
timeout; a request never waits for it (an answer not yet in, or a backend that does not answer,
leaves the router's choice as it was). Each worker asks and counts on its own: every gateway and
worker applies the same rule to the same answers, so a fleet agrees without talking.
Standard library only: it runs inside the proxy, and its tests run without it.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

POLL_SECONDS = 2.0
ASK_TIMEOUT = 1.0
DEMAND_WINDOW = 256  # requests: what a model is worth is how many of the last ones asked for it
FOREVER = timedelta(days=365)  # an expiry further away than this: loaded with keep_alive -1 (keep_loaded)


def kept_forever(model: dict[str, Any], now: datetime) -> bool:
    """An `/api/ps` entry loaded with a keep-alive of forever."""
    try:
        expires = datetime.fromisoformat(str(model.get("expires_at") or "").replace("Z", "+00:00"))
    except ValueError:
        return False
    return (expires if expires.tzinfo else expires.replace(tzinfo=UTC)) - now > FOREVER


def deployment_target(deployment: dict[str, Any]) -> tuple[str, str, int | None] | None:
    """(api_base, Ollama tag, window) of a router deployment, or None when it is not an Ollama one."""
    params = deployment.get("litellm_params") or {}
    model, api_base = params.get("model") or "", params.get("api_base")
    provider, _, tag = model.partition("/")
    if provider not in ("ollama", "ollama_chat") or not tag or not api_base:
        return None
    window = params.get("num_ctx")
    return api_base.rstrip("/"), tag, int(window) if isinstance(window, int) else None


OLLAMA_CALLS = ("/api/chat", "/api/generate", "/api/embed", "/api/embeddings")


def backend_of(url: str) -> str:
    """The backend's api_base, from the URL LiteLLM called on it (its logs give the endpoint's)."""
    url = url.rstrip("/")
    for call in OLLAMA_CALLS:
        if url.endswith(call):
            return url[: -len(call)]
    return url


def same_tag(a: str, b: str) -> bool:
    """Ollama names `phi3` and `phi3:latest` the same model."""
    return (a if ":" in a else f"{a}:latest") == (b if ":" in b else f"{b}:latest")


@dataclass
class Residency:
    spill_at: int = 2  # requests in flight on every warm backend before the others are let in
    clock: Callable[[], float] = time.monotonic
    loaded: dict[str, dict[str, int | None]] = field(default_factory=dict)  # api_base -> {tag: window}
    asked: dict[str, float] = field(default_factory=dict)  # api_base -> when its last answer was asked for
    in_flight: Counter = field(default_factory=Counter)  # api_base -> this worker's requests running there
    running: Counter = field(default_factory=Counter)  # (api_base, tag) -> the same, per model
    done: dict[tuple[str, str], float] = field(default_factory=dict)  # (api_base, tag) -> last one finished
    most: Counter = field(default_factory=Counter)  # api_base -> the most models it was seen holding at once
    recent: deque = field(default_factory=lambda: deque(maxlen=DEMAND_WINDOW))  # the tags of the last requests
    pinned: dict[str, set[str]] = field(default_factory=dict)  # api_base -> the tags loaded with keep_alive -1

    def learn(self, api_base: str, answer: dict[str, Any], asked: float | None = None) -> None:
        """What `/api/ps` of this backend said (asked for at `asked`): its loaded models and their windows."""
        self.loaded[api_base] = {m.get("name") or m.get("model"): m.get("context_length")
                                 for m in answer.get("models", []) if m.get("name") or m.get("model")}
        now = datetime.now(UTC)
        self.pinned[api_base] = {m.get("name") or m.get("model") for m in answer.get("models", [])
                                 if kept_forever(m, now)}
        self.asked[api_base] = self.clock() if asked is None else asked
        self.most[api_base] = max(self.most[api_base], len(self.loaded[api_base]))

    def room(self, api_base: str) -> bool:
        """Room to load one more without evicting, as far as can be told (never seen holding 2: yes)."""
        return self.most[api_base] < 2 or len(self.loaded[api_base]) < self.most[api_base]

    def victim(self, api_base: str) -> str | None:
        """The model Ollama would evict there to load another: of those running no request (of this
        worker, as far as it knows) the first by name, else the first by name of all (it goes once its
        requests end); one kept loaded last. None when nothing is loaded."""
        held = list(self.loaded.get(api_base, {}))
        idle = [name for name in held if self.running[(api_base, name)] == 0]
        kept = self.pinned.get(api_base, set())
        return min(idle or held, key=lambda name: (name in kept, name)) if held else None

    def eviction_cost(self, api_base: str) -> float:
        """What loading another model there costs: nothing when the model evicted stays loaded elsewhere,
        else how many recent requests asked for it, half a request more when the load must wait for
        its requests to end; infinite when nothing is loaded there to evict."""
        victim = self.victim(api_base)
        if victim is None:
            return float("inf")
        waits = 0.5 if self.running[(api_base, victim)] else 0.0
        if any(other != api_base and any(same_tag(victim, name) for name in held)
               for other, held in self.loaded.items()):
            return waits
        return float(sum(1 for tag in self.recent if same_tag(tag, victim))) + waits

    def forget(self, api_base: str) -> None:
        """A backend that did not answer: nothing is known of it."""
        self.loaded.pop(api_base, None)

    def warm(self, api_base: str, tag: str, window: int | None) -> bool:
        held = self.loaded.get(api_base, {})
        if any(same_tag(name, tag) and (window is None or loaded_window in (None, window))
               for name, loaded_window in held.items()):
            return True
        if self.running[(api_base, tag)] > 0:
            return True
        finished = self.done.get((api_base, tag))
        return finished is not None and finished >= self.asked.get(api_base, float("-inf"))

    def choose(self, deployments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The deployments the router may pick from, by the rule above (the same list when it has nothing to say)."""
        targets = [(d, deployment_target(d)) for d in deployments]
        known = [(d, t) for d, t in targets if t is not None]
        if len(known) != len(deployments) or len(deployments) < 2:
            return deployments
        warm = [d for d, (base, tag, window) in known if self.warm(base, tag, window)]
        if warm:
            if all(self.in_flight[base] >= self.spill_at for d, (base, _, _) in known if d in warm):
                return warm + [d for d, (base, _, _) in known if d not in warm and base in self.loaded
                               and self.room(base)]
            return warm
        counted = [(d, base) for d, (base, _, _) in known if base in self.loaded]
        if len(counted) < len(known):
            return deployments
        tag = known[0][1][1]
        roomy = [(d, base) for d, base in counted if self.room(base)]
        if roomy:
            most_room = min(len(self.loaded[base]) for _, base in roomy)
            return [first_for(tag, [(d, base) for d, base in roomy if len(self.loaded[base]) == most_room])]
        costs = {base: self.eviction_cost(base) for _, base in counted}
        cheapest = min(costs.values())
        if cheapest == float("inf"):
            return deployments
        return [first_for(tag, [(d, base) for d, base in counted if costs[base] == cheapest])]

    def started(self, api_base: str, tag: str) -> None:
        """A request was sent to this deployment: count it (the model is loaded or loading there, and
        the model Ollama evicts for it, if the backend was full, is gone until `/api/ps` says otherwise)."""
        held = self.loaded.get(api_base)
        if held is not None and not any(same_tag(name, tag) for name in held):
            if not self.room(api_base):
                held.pop(self.victim(api_base), None)
            held[tag] = None
        self.in_flight[api_base] += 1
        self.running[(api_base, tag)] += 1
        self.recent.append(tag)

    def finished(self, api_base: str, tag: str) -> None:
        if self.running[(api_base, tag)] > 0:
            self.running[(api_base, tag)] -= 1
            self.in_flight[api_base] -= 1
        self.done[(api_base, tag)] = self.clock()

    async def poll(self, api_bases: Iterable[str]) -> None:
        """Ask every backend at once; each answer (or its absence) replaces what was known."""
        bases, asked = list(api_bases), self.clock()
        answers = await asyncio.gather(*(asyncio.to_thread(ask_ps, base) for base in bases))
        for base, answer in zip(bases, answers, strict=True):
            if answer is None:
                self.forget(base)
            else:
                self.learn(base, answer, asked)

    async def keep_polling(self, api_bases: Callable[[], Iterable[str]]) -> None:
        while True:
            try:
                await self.poll(api_bases())
            except Exception:  # never let the poller die: the router then goes on as it would without it
                pass
            await asyncio.sleep(POLL_SECONDS)


def first_for(tag: str, candidates: list[tuple[dict[str, Any], str]]) -> dict[str, Any]:
    """The one deployment a cold model loads on among equals, the same for every worker and gateway
    (rendezvous hashing of model and backend): two of them never load it on two backends at once."""
    return min(candidates, key=lambda pair: hashlib.sha256(f"{tag}@{pair[1]}".encode()).digest())[0]


def ask_ps(api_base: str) -> dict[str, Any] | None:
    """A backend's `/api/ps`, or None when it does not answer in time."""
    try:
        with urllib.request.urlopen(f"{api_base}/api/ps", timeout=ASK_TIMEOUT) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None
