"""Residency routing's rule (in_proxy/residency.py): a model's requests go to the backends holding it
loaded, a busy warm backend lets a cold one in, no backend known leaves the router's choice alone;
and what it learns from `/api/ps`, asked of the Ollama double on loopback."""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import ollama
import pytest

from in_proxy.residency import Residency, backend_of, deployment_target, same_tag
from lab.ollama_double import serve

PHI3, MISTRAL = "phi3:3.8b-mini-128k-instruct-q8_0", "mistral:7b"
A, B, C = "http://10.9.0.1:11434", "http://10.9.0.2:11434", "http://10.9.0.3:11434"


def deployment(api_base: str, tag: str = PHI3, window: int = 4096, provider: str = "ollama_chat") -> dict:
    return {"model_name": "phi3", "litellm_params": {"model": f"{provider}/{tag}", "api_base": api_base,
                                                     "num_ctx": window},
            "model_info": {"id": f"phi3@{api_base}"}}


def ps(*loaded: tuple[str, int]) -> dict:
    return {"models": [{"name": tag, "model": tag, "context_length": window} for tag, window in loaded]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_backends_holding_the_model_at_its_window_are_the_only_candidates():
    r = Residency()
    r.learn(A, ps((MISTRAL, 4096)))
    r.learn(B, ps((PHI3, 4096)))
    r.learn(C, ps((PHI3, 8192)))  # loaded at another window: a request here would reload it
    every = [deployment(A), deployment(B), deployment(C)]
    assert r.choose(every) == [deployment(B)]
    [cold] = r.choose([deployment(A), deployment(C)])  # none warm: one of those with the most room
    assert cold in [deployment(A), deployment(C)]
    assert same_tag("phi3", "phi3:latest") and not same_tag("phi3", PHI3)


def test_a_busy_warm_backend_lets_the_others_in_and_a_model_just_used_counts_until_the_next_report():
    clock = Clock()
    r = Residency(spill_at=2, clock=clock)
    for base in (A, B):
        r.learn(base, ps())
    every = [deployment(A), deployment(B)]
    # Nothing loaded anywhere: one backend loads it, the same one whatever the order (every worker and
    # gateway picks it: none loads it a second time elsewhere).
    [first] = r.choose(every)
    assert r.choose(every[::-1]) == [first] and first in every
    clock.now += 1
    r.started(A, PHI3)  # running there: loaded, or loading
    assert r.choose(every) == [deployment(A)]
    r.started(A, PHI3)  # two in flight on the only warm backend: B may load it too
    assert r.choose(every) == every
    r.finished(A, PHI3)
    assert r.choose(every) == [deployment(A)]
    r.finished(A, PHI3)
    r.finished(A, PHI3)  # never below zero
    assert r.in_flight[A] == 0 and r.choose(every) == [deployment(A)]  # finished since A's last report
    clock.now += 1
    r.learn(A, ps())  # A's next report: the model is gone (evicted, or its keep-alive ended)
    assert r.choose(every) == [first]


def test_cold_models_load_on_one_backend_each_the_same_for_every_worker_and_spread_over_the_backends():
    """Rendezvous hashing of model and backend: two workers knowing the same picks the same backend for a
    cold model, and different models land on different backends."""
    workers = [Residency(), Residency()]
    for worker in workers:
        for base in (A, B, C):
            worker.learn(base, ps())
    picked = {}
    for tag in [f"model-{i}:7b" for i in range(12)]:
        every = [deployment(base, tag) for base in (A, B, C)]
        choices = [worker.choose(every) for worker in workers] + [workers[0].choose(every[::-1])]
        assert all(len(c) == 1 for c in choices) and choices[0] == choices[1] == choices[2], tag
        picked[tag] = choices[0][0]["litellm_params"]["api_base"]
    assert set(picked.values()) == {A, B, C}
    # With one backend holding a model already, the one with the most room comes first.
    workers[0].learn(A, ps(("gemma2:9b", 4096)))
    workers[0].most[A] = 3
    assert all(workers[0].choose([deployment(base, tag) for base in (A, B, C)])[0]["litellm_params"]["api_base"]
               != A for tag in picked)


def test_without_knowledge_of_every_deployment_the_routers_choice_is_left_alone():
    r = Residency()
    r.learn(A, ps((PHI3, 4096)))
    assert r.choose([deployment(A), deployment(B)]) == [deployment(A)]  # B unknown, A warm
    r.forget(A)
    assert r.choose([deployment(A), deployment(B)]) == [deployment(A), deployment(B)]
    other = {"litellm_params": {"model": "openai/gpt-4o", "api_base": A}}
    assert deployment_target(other) is None
    assert r.choose([deployment(A), other]) == [deployment(A), other]
    assert r.choose([deployment(A)]) == [deployment(A)]
    assert deployment_target(deployment(A, provider="ollama")) == (A, PHI3, 4096)
    # LiteLLM's logs name the endpoint it called: counted against the backend's api_base.
    assert backend_of(f"{A}/api/chat") == backend_of(f"{A}/api/embed") == backend_of(f"{A}/") == A


@pytest.fixture
def double(tmp_path: Path):
    behaviour = tmp_path / "behaviour.json"
    behaviour.write_text(json.dumps({"models": [PHI3, MISTRAL]}))
    server = serve("127.0.0.1", 0, str(behaviour))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_what_is_loaded_is_learnt_from_the_backends_own_report(double):
    r = Residency()
    silent = "http://127.0.0.1:9"  # nothing listens: forgotten, never waited for
    asyncio.run(r.poll([double, silent]))
    assert r.loaded == {double: {}}
    ollama.Client(host=double).chat(model=PHI3, messages=[{"role": "user", "content": "hi"}],
                                    options={"num_ctx": 4096})
    asyncio.run(r.poll([double, silent]))
    assert r.loaded == {double: {PHI3: 4096}}
    assert r.warm(double, PHI3, 4096) and not r.warm(double, PHI3, 8192) and not r.warm(double, MISTRAL, 4096)


def test_a_model_goes_where_it_loads_without_evicting_else_where_eviction_interrupts_nothing():
    r = Residency(spill_at=1)
    r.learn(A, ps((MISTRAL, 4096), ("gemma2:9b", 4096)))  # A was seen holding two: full at two
    r.learn(B, ps(("llama3:8b", 4096)))  # B: room for one more, as far as can be told
    every = [deployment(A), deployment(B)]
    assert r.choose(every) == [deployment(B)]  # phi3 cold: loads on B, evicting nothing
    r.learn(B, ps(("llama3:8b", 4096), ("llama3.1:8b", 4096)))  # now B is full too
    r.started(A, MISTRAL)
    r.started(A, "gemma2:9b")
    assert r.choose(every) == [deployment(B)]  # on A both models run requests: B's eviction interrupts none
    r.started(B, "llama3:8b")
    r.started(B, "llama3.1:8b")
    r.started(B, "llama3.1:8b")
    r.finished(B, "llama3.1:8b")
    # Every loaded model busy: Ollama unloads the first by name once its requests end, gemma2 on A (asked
    # for once lately), llama3.1 on B (twice).
    assert r.choose(every) == [deployment(A)]
    # A warm backend busy past spill_at lets in only the backends with room: none here.
    r.learn(A, ps((PHI3, 4096), (MISTRAL, 4096)))
    r.started(A, PHI3)
    assert r.choose(every) == [deployment(A)]


def test_a_model_kept_loaded_is_the_last_ollama_would_evict():
    """keep_alive -1 (keep_loaded) sorts last in Ollama's choice of an idle model to unload; /api/ps
    shows it as an expiry centuries away."""
    r = Residency()
    forever, soon = "2318-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
    r.learn(A, {"models": [{"name": "gemma2:9b", "context_length": 4096, "expires_at": forever},
                           {"name": "llama3:8b", "context_length": 4096, "expires_at": soon}]})
    assert r.victim(A) == "llama3:8b"
    r.started(A, "llama3:8b")  # the other one runs a request: the kept one is the only idle one left
    assert r.victim(A) == "gemma2:9b"


def test_a_cold_model_evicts_where_the_model_ollama_would_unload_is_worth_least():
    """Both backends full, every model idle: Ollama unloads the first by name of the idle ones. A holds
    gemma2 (first by name there) and llama3, B holds llama3.1 (first there) and phi3."""
    r = Residency()
    r.learn(A, ps(("gemma2:9b", 4096), ("llama3:8b", 4096)))
    r.learn(B, ps(("llama3.1:8b", 4096), (PHI3, 4096)))
    every = [deployment(A, MISTRAL), deployment(B, MISTRAL)]
    for tag in ["gemma2:9b"] * 5 + ["llama3.1:8b"] * 2:  # gemma2 asked for more than llama3.1 lately
        r.started(A if tag.startswith("gemma2") else B, tag)
        r.finished(A if tag.startswith("gemma2") else B, tag)
    assert r.victim(A) == "gemma2:9b" and r.victim(B) == "llama3.1:8b"
    assert r.choose(every) == [deployment(B, MISTRAL)]  # evicting llama3.1 costs 2 recent requests, gemma2 5
    r.started(B, "llama3.1:8b")  # now running there: Ollama would unload phi3 on B instead
    assert r.victim(B) == PHI3 and r.choose(every) == [deployment(B, MISTRAL)]  # phi3: 0 recent requests
    r.finished(B, "llama3.1:8b")
    r.learn(A, ps(("gemma2:9b", 4096), ("llama3.1:8b", 4096)))  # llama3.1 on A too: B's copy costs nothing
    for _ in range(10):
        r.started(A, "llama3.1:8b")
        r.finished(A, "llama3.1:8b")
    assert r.eviction_cost(B) == 0.0 and r.choose(every) == [deployment(B, MISTRAL)]
    r.started(A, "gemma2:9b")
    r.started(A, "llama3.1:8b")
    r.started(B, "llama3.1:8b")
    r.started(B, PHI3)
    # Every loaded model runs a request: B's llama3.1 goes once its request ends, and stays loaded on A.
    assert r.victim(B) == "llama3.1:8b" and r.choose(every) == [deployment(B, MISTRAL)]


def test_what_this_worker_sent_counts_until_the_next_answer():
    """A cold model sent to a full backend is loaded there, and the model Ollama evicts for it gone,
    before `/api/ps` says so: the worker's next choices see it."""
    r = Residency()
    r.learn(A, ps(("gemma2:9b", 4096), ("llama3:8b", 4096)))
    r.learn(B, ps(("llama3.1:8b", 4096), (PHI3, 4096)))
    r.started(A, MISTRAL)  # A full: gemma2 (idle, first by name) makes room
    assert set(r.loaded[A]) == {"llama3:8b", MISTRAL} and r.warm(A, MISTRAL, 4096)
    assert not r.warm(A, "gemma2:9b", 4096)
    r.learn(C, ps())  # a backend with room takes one more without evicting
    r.started(C, MISTRAL)
    assert r.loaded[C] == {MISTRAL: None}
