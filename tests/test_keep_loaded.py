"""Models kept loaded (keep_loaded): the preflight holds their sizes, as the backend reports them,
against its gpu_memory_gib; the keeper (on_host/keep_loaded.py) loads them with keep_alive -1 at
their windows, leaves them alone once resident, loads back what went, and says when they do not fit
together. Against the Ollama double on loopback, read by the official ollama client."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import ollama
import pytest

from gateway.preflight.backends import check_backend
from gateway.settings import SettingsError, load
from lab.ollama_double import serve
from on_host import keep_loaded
from tests.test_settings import seed_data

PHI3, MISTRAL, GEMMA = "phi3:3.8b-mini-128k-instruct-q8_0", "mistral:7b", "gemma2:9b"
SIZES_MIB = {PHI3: 3910, MISTRAL: 4170, GEMMA: 5150}


@pytest.fixture
def double(tmp_path: Path):
    """A double with 9 GiB of GPU memory: phi3 and mistral fit together, gemma2 and mistral do not."""
    behaviour = tmp_path / "behaviour.json"
    behaviour.write_text(json.dumps({"models": list(SIZES_MIB), "vram_mib": 9216, "load_seconds_per_gib": 0.01}))
    server = serve("127.0.0.1", 0, str(behaviour))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def settings(port: int, kept: tuple[str, ...], gpu_memory_gib: float | None = 10):
    models = {"phi3": {"tag": PHI3}, "mistral": {"tag": MISTRAL, "context_window": 4096}, "gemma2": {"tag": GEMMA}}
    for name in kept:
        models[name]["keep_loaded"] = True
    backend = {"address": "127.0.0.1", "port": port, "models": list(models)}
    if gpu_memory_gib is not None:
        backend["gpu_memory_gib"] = gpu_memory_gib
    return load(seed_data(litellm_models=models, litellm_backends={"llm1": backend}))


def kept_entries(port: int, *names: str) -> list[dict]:
    s = settings(port, names)
    return [{"model": m.name, "tag": m.tag, "backend": b.name, "api_base": b.api_base, "num_ctx": s.window(m, b)}
            for m, b in s.kept_loaded]


def test_a_backend_serving_a_kept_model_must_say_its_gpu_memory():
    with pytest.raises(SettingsError) as refused:
        settings(11434, ("phi3",), gpu_memory_gib=None)
    assert "litellm_backends['llm1'].gpu_memory_gib: is needed: it serves phi3 (keep_loaded)" in str(refused.value)
    for wrong in (0, -3, "24G", True):
        with pytest.raises(SettingsError, match=r"gpu_memory_gib: .* is not a size in GiB"):
            settings(11434, (), gpu_memory_gib=wrong)
    with pytest.raises(SettingsError, match=r"keep_loaded: 'yes' is not true or false"):
        load(seed_data(litellm_models={"phi3": {"tag": PHI3, "keep_loaded": "yes"}},
                       litellm_backends={"llm1": {"address": "llm1", "models": ["phi3"], "gpu_memory_gib": 8}}))


def test_the_preflight_holds_the_kept_models_sizes_against_the_backends_memory(double):
    def memory(*kept: str, gib: float = 10) -> str:
        s = settings(double, kept, gib)
        [result] = [r for r in check_backend(s.backends[0], {m.name: m for m in s.models}) if r.check == "memory"]
        return ("ok: " if result.ok else "refused: ") + result.detail + (f"; fix: {result.fix}" if result.fix else "")

    assert memory("phi3", "mistral") == "ok: the keep_loaded models fit: 7.9 of 10 GiB (phi3 3.8 GiB, mistral 4.1 GiB)"
    refused = memory("phi3", "mistral", "gemma2", gib=12)
    assert refused.startswith("refused: the keep_loaded models need 12.9 GiB together (phi3 3.8 GiB, mistral 4.1 GiB, "
                              "gemma2 5.0 GiB), more than its gpu_memory_gib of 12; fix: set keep_loaded on fewer")
    s = settings(double, ())
    assert not [r for r in check_backend(s.backends[0], {m.name: m for m in s.models}) if r.check == "memory"]


def test_the_keeper_loads_kept_models_for_ever_at_their_windows_and_then_leaves_them_alone(double):
    client = ollama.Client(host=f"http://127.0.0.1:{double}")
    kept = kept_entries(double, "phi3", "mistral")
    done, wrong = keep_loaded.keep_all(kept)
    assert wrong == [] and [line.split(" loaded")[0] for line in done] == [
        f"llm1: phi3 ({PHI3})", f"llm1: mistral ({MISTRAL})"]
    loaded = {m.model: m for m in client.ps().models}
    assert set(loaded) == {PHI3, MISTRAL} and loaded[MISTRAL].context_length == 4096
    assert all(m.expires_at.year > time.gmtime().tm_year + 100 for m in loaded.values())
    assert keep_loaded.keep_all(kept) == ([], [])  # resident: nothing is sent
    # Unloaded (an Ollama restart, an eviction): the next round loads it back.
    client.generate(model=MISTRAL, prompt="", keep_alive=0)
    deadline = time.monotonic() + 5
    while MISTRAL in {m.model for m in client.ps().models} and time.monotonic() < deadline:
        time.sleep(0.05)
    done, wrong = keep_loaded.keep_all(kept)
    assert wrong == [] and len(done) == 1 and done[0].startswith(f"llm1: mistral ({MISTRAL}) loaded")


def test_the_keeper_says_which_kept_models_do_not_fit_together_and_how_to_fix_it(double):
    done, wrong = keep_loaded.keep_all(kept_entries(double, "mistral", "gemma2"))
    assert len(done) == 2 and len(wrong) == 1
    assert wrong[0].startswith(f"llm1 cannot hold mistral, gemma2 loaded together: after loading them its /api/ps "
                               f"lists {GEMMA}, without mistral; fix: set keep_loaded on fewer")


def test_the_keeper_names_a_backend_that_does_not_answer():
    entry = {"model": "phi3", "tag": PHI3, "backend": "llm9", "api_base": "http://127.0.0.1:9", "num_ctx": 2048}
    assert keep_loaded.keep_all([entry])[1][0].startswith("llm9 (http://127.0.0.1:9) does not answer:")


def test_the_keeper_runs_once_from_its_file(double, tmp_path, capsys):
    path = tmp_path / "keep-loaded.json"
    path.write_text(json.dumps({"kept": kept_entries(double, "phi3")}))
    assert keep_loaded.main([str(path), "--once"]) == 0
    assert capsys.readouterr().out.endswith("1 kept model(s) resident on their backends\n")
    path.write_text(json.dumps({"kept": kept_entries(double, "mistral", "gemma2")}))
    assert keep_loaded.main([str(path), "--once"]) == 1
