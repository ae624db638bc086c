"""Residency routing through gw2 (litellm_residency_routing): phi3-3.8b is served by both backends,
whose memory (the Ollama double's `vram_mib`) holds one model at a time. A request for the model
goes to the backend holding it loaded, never to the other while the holder has a free slot; under
more load than one backend runs, the other loads it too, once."""
from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from gateway.services import kept_models
from in_proxy.residency import POLL_SECONDS
from lab import machines
from lab.topology import BACKENDS, GATEWAY_PORT, MODELS, OLLAMA_PORT
from tests.lab.conftest import TEST_GATEWAY, deploy, serving, ssh, wait_for
from tests.lab.test_metrics import scrape, total

pytestmark = pytest.mark.lab
URL = f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1"
MODEL = "phi3-3.8b"
TAG, WINDOW = MODELS[MODEL]["tag"], MODELS[MODEL]["context_window"]
LLM1, LLM2 = BACKENDS


def double(backend, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(f"http://{backend.address}:{OLLAMA_PORT}{path}",
                                                       data=data), timeout=30) as answer:
        return json.loads(answer.read())


def served(backend) -> int:
    return double(backend, "/_double/stats")["requests"].get("POST /api/chat", 0)


def loads(backend) -> int:
    return double(backend, "/_double/stats")["scheduler"]["loads"].get(TAG, 0)


@pytest.fixture(scope="module")
def residency(first_deploy, deploy_dir):
    """gw2 with residency routing; each backend's memory holds one model, which loads in about a second."""
    with contextlib.ExitStack() as little_memory:
        for backend in BACKENDS:
            little_memory.enter_context(machines.double_behaviour(backend, vram_mib=6000, load_seconds_per_gib=0.25,
                                                                  token_delay=0.02))
        # A busy holder lets another backend in at 2 requests in flight per worker (8 clients reach it).
        result = deploy(deploy_dir, litellm_residency_routing=True, litellm_residency_spill=2)
        assert result.returncode == 0, result.output[-4000:]
        yield
    result = deploy(deploy_dir)
    assert result.returncode == 0, result.output[-4000:]


def held_by(backend) -> None:
    """phi3 loaded on `backend` alone (at the deployments' window), the counts from zero, and the
    gateway's workers told (they ask every POLL_SECONDS)."""
    for other in BACKENDS:
        for loaded in double(other, "/api/ps")["models"]:
            try:  # a model an earlier test pulled and removed may still be loaded: Ollama says 404 then
                double(other, "/api/generate", {"model": loaded["name"], "keep_alive": 0})
            except urllib.error.HTTPError as error:
                assert error.code == 404, error
    double(backend, "/api/generate", {"model": TAG, "options": {"num_ctx": WINDOW}})
    assert [m["name"] for m in double(backend, "/api/ps")["models"]] == [TAG]
    for other in BACKENDS:
        double(other, "/_double/reset", {})
    time.sleep(POLL_SECONDS * 1.5)


def ask(master_key: str) -> str:
    sdk = openai.OpenAI(base_url=URL, api_key=master_key, max_retries=0, timeout=60)
    answer = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8)
    return answer.choices[0].message.content


@pytest.mark.parametrize("holder", BACKENDS, ids=lambda b: b.name)
def test_a_loaded_models_requests_go_where_it_is_loaded_and_never_load_it_elsewhere(residency, master_key, holder):
    held_by(holder)
    other = LLM1 if holder is LLM2 else LLM2
    assert all(ask(master_key) for _ in range(12))  # one at a time: the holder always has a free slot
    assert (served(holder), served(other)) == (12, 0)
    assert (loads(holder), loads(other)) == (0, 0)  # it stayed loaded; nothing was loaded on the other


def routed(residency: str, backend) -> float:
    """gateway_routed_requests_total of the serving instance for phi3 on `backend`, as Prometheus scrapes it."""
    port = int(serving().split("@")[1].split(".")[0])
    return total(scrape(port), "gateway_routed_requests_total", backend=f"{backend.fqdn}:{OLLAMA_PORT}", model=TAG,
                 residency=residency)


def test_more_load_than_one_backend_runs_loads_the_model_on_the_other_once(residency, master_key):
    held_by(LLM2)
    before = {(r, b.name): routed(r, b) for r in ("warm", "cold") for b in BACKENDS}
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(lambda _: ask(master_key), range(48)))
    assert served(LLM1) > 0 and served(LLM2) > 0  # the busy holder let the other in
    assert loads(LLM1) == 1 and loads(LLM2) == 0  # and the other loaded it once, then kept it
    # The metrics say so: requests sent to llm2 warm, the first to llm1 cold (one per worker at most: each
    # learns what the other sent only from the next /api/ps), the rest to llm1 warm.
    sent = {(r, b.name): routed(r, b) - before[(r, b.name)] for r in ("warm", "cold") for b in BACKENDS}
    assert sent[("cold", "llm2")] == 0 and sent[("warm", "llm2")] == served(LLM2)
    assert 1 <= sent[("cold", "llm1")] <= 2 and sent[("cold", "llm1")] + sent[("warm", "llm1")] == served(LLM1)


KEPT, KEPT_TAG = "mistral-7b", MODELS["mistral-7b"]["tag"]  # served by llm2 alone


def keep_mistral(deploy_dir, gpu_memory_gib: float):
    """A deploy of gw2 as the residency tests have it, mistral-7b kept loaded on llm2."""
    models = {name: dict(spec) for name, spec in MODELS.items()}
    models[KEPT]["keep_loaded"] = True
    backends = {b.name: {"address": b.fqdn, "port": OLLAMA_PORT, "models": list(b.models)} for b in BACKENDS}
    backends[LLM2.name]["gpu_memory_gib"] = gpu_memory_gib
    return deploy(deploy_dir, litellm_residency_routing=True, litellm_residency_spill=2,
                  litellm_models=models, litellm_backends=backends)


def kept_on_llm2() -> dict | None:
    return next((m for m in double(LLM2, "/api/ps")["models"] if m["name"] == KEPT_TAG), None)


@pytest.fixture
def roomier_llm2(residency):
    """llm2's memory holds mistral and phi3 at once."""
    with machines.double_behaviour(LLM2, vram_mib=12000):
        yield


def test_a_kept_model_is_checked_against_the_backends_memory_loaded_for_ever_and_loaded_back(
        roomier_llm2, deploy_dir, master_key):
    """keep_loaded: refused before any change where it cannot fit; else the keeper on gw2 loads it on
    llm2 at its window for ever, each request keeps it so, and it comes back after an unload; a second
    deploy changes nothing. (The residency fixture's own deploy afterwards removes the keeper.)"""
    refused = keep_mistral(deploy_dir, 3)
    assert refused.returncode != 0
    [row] = [line for line in refused.output.splitlines() if "backend memory" in line]
    assert row.split()[:4] == ["llm2", "backend", "memory", "FAIL"], row
    assert (f"the keep_loaded models need 4.1 GiB together ({KEPT} 4.1 GiB), more than its gpu_memory_gib of 3; "
            "fix: set keep_loaded on fewer") in row
    assert "Nothing was changed on any host" in refused.output
    assert ssh(f"systemctl is-active {kept_models.UNIT}", check=False).strip() == "inactive"

    result = keep_mistral(deploy_dir, 11.7)
    assert result.returncode == 0, result.output[-4000:]
    assert ssh(f"systemctl is-active {kept_models.UNIT}").strip() == "active"
    kept = kept_on_llm2()
    assert kept and kept["context_length"] == MODELS[KEPT]["context_window"], kept
    assert int(kept["expires_at"][:4]) > 2200, kept  # keep_alive -1: for ever

    sdk = openai.OpenAI(base_url=URL, api_key=master_key, max_retries=0, timeout=60)
    for model in (KEPT, MODEL):
        sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    calls = {c["model"]: c["keep_alive"] for c in double(LLM2, "/_double/stats")["calls"]
             if c["model"] in (KEPT_TAG, TAG)}
    assert calls[KEPT_TAG] == -1 and calls.get(TAG, None) is None, calls

    double(LLM2, "/api/generate", {"model": KEPT_TAG, "keep_alive": 0})  # as an Ollama restart would
    wait_for(lambda: kept_on_llm2() is None, 10, "mistral unloaded from llm2")
    ssh(f"systemctl restart {kept_models.UNIT}")  # its start waits until every kept model is back
    assert int(kept_on_llm2()["expires_at"][:4]) > 2200
    assert f"llm2: {KEPT} ({KEPT_TAG}) loaded" in ssh(f"journalctl -u {kept_models.UNIT} --since -1min --no-pager")

    again = keep_mistral(deploy_dir, 11.7)
    assert again.returncode == 0 and again.changes == 0, again.output[-3000:]
