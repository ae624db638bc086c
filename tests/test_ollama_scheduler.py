"""The Ollama double schedules as Ollama's server does (shared/reference/ollama-scheduler.md): loads,
keep-alive, slots and the queue, eviction, reloads for another window; and the official `ollama`
client parses every reply it gives."""
from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import ollama
import pytest

from lab.ollama_double import BUSY, MODEL_SIZES_MIB, keep_alive_seconds, serve

PHI3 = "phi3:3.8b-mini-128k-instruct-q8_0"
MISTRAL = "mistral:7b"
GEMMA = "gemma2:9b"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
def backend(tmp_path: Path):
    """A double on loopback and a function that sets its behaviour (the models always three)."""
    behaviour = tmp_path / "behaviour.json"

    def configure(**settings) -> None:
        behaviour.write_text(json.dumps({"models": [PHI3, MISTRAL, GEMMA], **settings}))
        time.sleep(0.01)  # a new modification time, whatever the file system's resolution

    configure()
    server = serve("127.0.0.1", 0, str(behaviour))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = ollama.Client(host=f"http://127.0.0.1:{server.server_address[1]}", timeout=30)
    yield client, configure
    server.shutdown()
    server.server_close()


def stats(client: ollama.Client) -> dict:
    return client._client.get("/_double/stats").json()["scheduler"]


def loaded(client: ollama.Client) -> dict[str, int]:
    return {m.model: m.context_length for m in client.ps().models}


def in_background(work) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_the_official_client_parses_every_reply(backend):
    client, _ = backend
    assert {m.model for m in client.list().models} == {PHI3, MISTRAL, GEMMA}
    assert client.show(PHI3).details.family == "phi3"
    answer = client.chat(model=PHI3, messages=HELLO, options={"num_ctx": 2048})
    assert answer.message.content and answer.done and answer.eval_count > 0
    streamed = list(client.chat(model=PHI3, messages=HELLO, stream=True, options={"num_ctx": 2048}))
    assert streamed[-1].done and "".join(part.message.content for part in streamed).strip()
    assert client.generate(model=PHI3, prompt="hi", options={"num_ctx": 2048}).response
    assert len(client.embed(model=PHI3, input=["a", "b"]).embeddings) == 2
    [running] = client.ps().models
    assert running.model == PHI3 and running.context_length == 2048
    assert running.size_vram == running.size == MODEL_SIZES_MIB[PHI3] * 1024 * 1024
    assert running.details.family == "phi3"
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="nope:1b", messages=HELLO)
    assert missing.value.status_code == 404 and "not found" in missing.value.error


def test_a_model_is_loaded_once_for_its_first_request_and_kept_for_its_keep_alive(backend):
    client, configure = backend
    configure(load_seconds_per_gib=0.5)  # mistral: 4170 MiB, about 2 s
    started = time.monotonic()
    first = client.chat(model=MISTRAL, messages=HELLO, keep_alive="10m")
    assert time.monotonic() - started >= 1.9
    assert first.load_duration >= 1.9e9  # what the request waited for the load
    started = time.monotonic()
    client.chat(model=MISTRAL, messages=HELLO, keep_alive="10m")
    assert time.monotonic() - started < 1  # loaded already
    [running] = client.ps().models
    left = (running.expires_at - datetime.now(UTC)).total_seconds()
    assert 590 < left <= 600, running.expires_at
    assert stats(client)["loads"] == {MISTRAL: 1}


def test_an_idle_model_goes_when_its_keep_alive_ends_and_keep_alive_0_or_negative_say_now_or_never(backend):
    client, _ = backend
    client.chat(model=PHI3, messages=HELLO, keep_alive="1s")
    assert list(loaded(client)) == [PHI3]
    time.sleep(1.3)
    assert loaded(client) == {}
    # An empty prompt loads the model (done_reason "load"), with keep_alive 0 unloads it.
    assert client.generate(model=MISTRAL, prompt="", keep_alive=-1).done_reason == "load"
    [forever] = client.ps().models
    assert forever.expires_at.year > 2100
    assert client.generate(model=MISTRAL, prompt="", keep_alive=0).done_reason == "unload"
    assert loaded(client) == {}
    with pytest.raises(ollama.ResponseError) as bad:
        client.chat(model=PHI3, messages=HELLO, keep_alive="soon")
    assert bad.value.status_code == 400 and "invalid duration" in bad.value.error


def test_keep_alive_is_read_as_ollama_reads_it():
    assert keep_alive_seconds("5m") == 300 and keep_alive_seconds("1h30m") == 5400
    assert keep_alive_seconds(30) == 30 and keep_alive_seconds("45") == 45 and keep_alive_seconds("250ms") == 0.25
    assert keep_alive_seconds(-1) == keep_alive_seconds("-1m") == (2 ** 63 - 1) // 10 ** 9
    for wrong in ("5 minutes", "m5", True):
        with pytest.raises(ValueError):
            keep_alive_seconds(wrong)


def test_num_parallel_requests_run_at_once_the_rest_wait_and_past_max_queue_get_503(backend):
    client, configure = backend
    configure(num_parallel=1, max_queue=1, token_delay=0.1)  # a reply of 16 words: 1.6 s
    client.generate(model=PHI3, prompt="")  # loaded
    outcomes: list[str] = []
    first = in_background(lambda: outcomes.append(client.chat(model=PHI3, messages=HELLO).done_reason))
    time.sleep(0.3)
    second = in_background(lambda: outcomes.append(client.chat(model=PHI3, messages=HELLO).done_reason))
    time.sleep(0.3)
    with pytest.raises(ollama.ResponseError) as busy:  # one runs, one waits: the queue is full
        client.chat(model=PHI3, messages=HELLO)
    assert busy.value.status_code == 503 and busy.value.error == BUSY
    first.join(10)
    second.join(10)
    assert outcomes == ["stop", "stop"]
    counted = stats(client)
    assert counted["busy"] == 1 and counted["slot_wait_seconds"] >= 1.0  # the second waited for the first


def test_a_model_that_does_not_fit_evicts_an_idle_one_before_a_busy_one(backend):
    client, configure = backend
    # Room for two of the three: phi3 (3910) and mistral (4170) fit in 10000 MiB, and mistral with gemma (5150).
    configure(vram_mib=10000, token_delay=0.15)
    client.generate(model=PHI3, prompt="")
    client.generate(model=MISTRAL, prompt="")
    busy = in_background(lambda: client.chat(model=MISTRAL, messages=HELLO))  # 2.4 s of tokens
    time.sleep(0.3)
    client.generate(model=GEMMA, prompt="")
    assert set(loaded(client)) == {MISTRAL, GEMMA}  # phi3 was idle: it went, mistral serves on
    assert stats(client)["evictions"] == {PHI3: 1}
    busy.join(10)


def test_when_every_loaded_model_is_busy_the_new_one_waits_until_the_evicted_ones_requests_end(backend):
    client, configure = backend
    configure(vram_mib=6000, token_delay=0.1)  # one model at a time
    client.generate(model=MISTRAL, prompt="")
    busy = in_background(lambda: client.chat(model=MISTRAL, messages=HELLO))  # 1.6 s
    time.sleep(0.3)
    started = time.monotonic()
    answer = client.chat(model=GEMMA, messages=HELLO, options={"num_predict": 1})
    waited = time.monotonic() - started
    busy.join(10)
    assert answer.done and waited >= 1.0, waited  # mistral finished its request first
    assert list(loaded(client)) == [GEMMA] and stats(client)["evictions"] == {MISTRAL: 1}


def test_a_model_chosen_to_go_serves_new_requests_until_it_is_idle(backend):
    """Ollama's getRunner hands a loaded model's requests over at once, even the model chosen to go:
    the load behind it waits until no request runs on it."""
    client, configure = backend
    configure(vram_mib=6000, token_delay=0.1)  # one model at a time
    client.generate(model=MISTRAL, prompt="")
    first = in_background(lambda: client.chat(model=MISTRAL, messages=HELLO))  # 1.6 s
    time.sleep(0.3)
    cold = {}
    gemma = in_background(lambda: cold.update(answer=client.chat(model=GEMMA, messages=HELLO,
                                                                     options={"num_predict": 1})))
    time.sleep(0.3)  # gemma waits for mistral's request; mistral is chosen to go
    started = time.monotonic()
    answer = client.chat(model=MISTRAL, messages=HELLO, options={"num_predict": 1})
    assert answer.done and time.monotonic() - started < 0.5  # served on the mistral still loaded
    first.join(10)
    gemma.join(10)
    assert cold["answer"].done and list(loaded(client)) == [GEMMA]
    assert stats(client)["loads"] == {MISTRAL: 1, GEMMA: 1} and stats(client)["evictions"] == {MISTRAL: 1}


def test_models_to_load_wait_their_turn_in_one_queue(backend):
    """Ollama's processPending takes the requests that must load a model one at a time, in the order
    they came: the first blocks the next until its load has started."""
    client, configure = backend
    configure(vram_mib=6000, token_delay=0.1)  # one model at a time
    client.generate(model=MISTRAL, prompt="")
    busy = in_background(lambda: client.chat(model=MISTRAL, messages=HELLO))  # 1.6 s
    time.sleep(0.3)
    order: list[str] = []
    gemma = in_background(lambda: order.append(client.chat(model=GEMMA, messages=HELLO,
                                                          options={"num_predict": 1}).model))
    time.sleep(0.2)
    phi3 = in_background(lambda: order.append(client.chat(model=PHI3, messages=HELLO,
                                                         options={"num_predict": 1}).model))
    for thread in (busy, gemma, phi3):
        thread.join(20)
    assert order == [GEMMA, PHI3]
    assert stats(client)["loads"] == {MISTRAL: 1, GEMMA: 1, PHI3: 1}
    assert stats(client)["evictions"] == {MISTRAL: 1, GEMMA: 1}


def test_another_window_reloads_the_model_and_max_loaded_models_bounds_how_many_stay(backend):
    client, configure = backend
    client.chat(model=PHI3, messages=HELLO, options={"num_ctx": 2048})
    client.chat(model=PHI3, messages=HELLO, options={"num_ctx": 2048})
    client.chat(model=PHI3, messages=HELLO, options={"num_ctx": 8192})
    assert loaded(client) == {PHI3: 8192} and stats(client)["loads"] == {PHI3: 2}
    configure(max_loaded_models=1)
    client.chat(model=MISTRAL, messages=HELLO)
    assert list(loaded(client)) == [MISTRAL] and stats(client)["evictions"] == {PHI3: 1}


def test_a_model_is_pulled_and_removed_as_ollama_pull_and_rm_do(backend):
    """The official client's pull (streamed and not) and delete, and what /api/tags lists after."""
    client, _ = backend
    names = lambda: sorted(m.model for m in client.list().models)  # noqa: E731
    before = names()
    assert client.pull("qwen2.5:7b").status == "success"
    assert [step.status for step in client.pull("tinyllama", stream=True)][-1] == "success"
    assert names() == sorted([*before, "qwen2.5:7b", "tinyllama:latest"])
    assert client.chat("qwen2.5:7b", messages=HELLO).message.content  # served at once
    assert client.delete("qwen2.5:7b").status == "success" and client.delete(MISTRAL).status == "success"
    assert names() == sorted(set(before) - {MISTRAL} | {"tinyllama:latest"})
    with pytest.raises(ollama.ResponseError) as gone:
        client.delete("qwen2.5:7b")
    assert gone.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat("qwen2.5:7b", messages=HELLO)
    assert missing.value.status_code == 404
