"""Prompts are never cut short in silence: each model's window is sent to Ollama with every request,
and a prompt that does not fit is refused before any backend is called (official OpenAI client)."""
from __future__ import annotations

import json
import urllib.request

import openai
import pytest

from lab.topology import BACKENDS, GATEWAY_PORT, MODELS, OLLAMA_PORT
from tests.lab.conftest import TEST_GATEWAY, deploy, ssh
from tests.lab.test_team_keys import create, fleet, keys_file  # noqa: F401 - fixtures, a team key of the tests' own

pytestmark = pytest.mark.lab
URL = f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1"
MODEL = "phi3-3.8b"  # on both backends
WINDOW = MODELS[MODEL]["context_window"]  # 2048 in the lab, the seed's figure
ANSWER = 16  # max_tokens the requests ask for


def double(backend, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(f"http://{backend.address}:{OLLAMA_PORT}{path}",
                                                       data=data)) as r:
        return json.loads(r.read())


def reset_doubles() -> None:
    for backend in BACKENDS:
        double(backend, "/_double/reset", {})


def calls() -> list[dict]:
    """The model calls both backends received since the last reset."""
    return [call for backend in BACKENDS for call in double(backend, "/_double/stats")["calls"]]


def words(n: int) -> str:
    return " ".join(["hello"] * n)


@pytest.fixture(scope="module")
def longest(first_deploy) -> int:
    """The most words of a prompt that fits with ANSWER tokens, by the gateway's own count on the host
    (the installed LiteLLM's token counter, raised by the default 25 % margin)."""
    script = (  # a bisection: the count grows with the words
        "import math, litellm\n"
        "fits = lambda n: math.ceil(litellm.token_counter(messages=[{'role': 'user', 'content': "
        f"' '.join(['hello'] * n)}}]) * 1.25) + {ANSWER} <= {WINDOW}\n"
        "low, high = 1000, 2100\n"
        "assert fits(low) and not fits(high)\n"
        "while high - low > 1:\n"
        "    middle = (low + high) // 2\n"
        "    low, high = (middle, high) if fits(middle) else (low, middle)\n"
        "print(low)\n"
    )
    return int(ssh(f"LITELLM_LOCAL_MODEL_COST_MAP=True /opt/litellm/current/bin/python -c \"{script}\"").strip())


def client(key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=URL, api_key=key, max_retries=0, timeout=60)


def ask(key: str, n: int, stream: bool = False, **kwargs):
    create = client(key).chat.completions.create
    answer = create(model=MODEL, messages=[{"role": "user", "content": words(n)}], stream=stream, **kwargs)
    return "".join(c.choices[0].delta.content or "" for c in answer if c.choices) if stream else answer


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_prompt_just_under_the_window_is_read_whole(master_key, longest, stream):
    reset_doubles()
    answer = ask(master_key, longest, stream=stream, max_tokens=ANSWER)
    assert (answer if stream else answer.choices[0].message.content)
    [call] = calls()
    # The double saw every token: <|user|>, the words, <|end|>, <|assistant|>; nothing was cut.
    assert call["num_ctx"] == WINDOW and call["prompt_tokens"] == call["prompt_eval_count"] == longest + 3


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_prompt_just_over_the_window_is_refused_before_any_backend_call(master_key, longest, stream):
    reset_doubles()
    with pytest.raises(openai.BadRequestError) as caught:
        ask(master_key, longest + 1, stream=stream, max_tokens=ANSWER)
    assert caught.value.code == "context_length_exceeded"
    assert f"maximum context length is {WINDOW} tokens" in caught.value.message
    assert calls() == []


def test_the_issue_s_6006_token_prompt_is_refused_not_truncated(master_key):
    """Measured before: 200, and Ollama would have read the prompt's last 2048 tokens only."""
    reset_doubles()
    with pytest.raises(openai.BadRequestError) as caught:
        ask(master_key, 6000)
    assert caught.value.code == "context_length_exceeded" and "However, you requested" in caught.value.message
    assert calls() == []


def test_an_answer_may_not_run_past_the_window(master_key, longest):
    """Asked for no limit, the answer gets what is left of the window (Ollama would drop the prompt's start)."""
    reset_doubles()
    ask(master_key, longest - 100)
    [call] = calls()
    assert 0 < call["num_predict"] <= WINDOW - call["prompt_tokens"]


def test_no_request_reaches_a_backend_without_the_declared_window(master_key, fleet):  # noqa: F811
    team = create(fleet, "context-team", "--max-tokens", "100")
    reset_doubles()
    ask(master_key, 10)
    ask(master_key, 10, stream=True)
    ask(master_key, 10, extra_body={"num_ctx": 65536})  # a client cannot pick another window
    ask(team, 10)
    client(master_key).completions.create(model=MODEL, prompt="hello there", max_tokens=8)
    seen = calls()
    assert len(seen) == 5 and {c["num_ctx"] for c in seen} == {WINDOW}, seen
    loaded = {m["name"]: m["context_length"] for b in BACKENDS for m in double(b, "/api/ps")["models"]}
    assert loaded[MODELS[MODEL]["tag"]] == WINDOW


def test_a_team_key_s_max_tokens_still_applies_beside_the_window(fleet, longest):  # noqa: F811
    team = create(fleet, "window-team", "--max-tokens", "100")
    with pytest.raises(openai.BadRequestError) as caught:
        ask(team, 10, max_tokens=200)
    assert "limit of 100 tokens" in caught.value.message
    reset_doubles()
    ask(team, 10)  # room for far more: the key's 100
    ask(team, longest - 20)  # room for less than 100: what is left of the window
    short, long = calls()
    assert short["num_predict"] == 100
    assert long["num_predict"] < 100 and long["num_predict"] <= WINDOW - long["prompt_tokens"]
    with pytest.raises(openai.BadRequestError) as refused:
        ask(team, longest + 1, max_tokens=ANSWER)
    assert refused.value.code == "context_length_exceeded"


def test_fab_health_shows_the_context_each_model_is_loaded_with(master_key, fleet):  # noqa: F811
    ask(master_key, 10)  # phi3 loaded on whichever backend served it, with the declared window
    result = fleet("health")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(MODEL)]
    loaded = [row for row in rows if row[4] == "yes"]
    assert loaded and all(row[5] == str(WINDOW) for row in loaded), result.stdout


def test_where_windows_differ_a_prompt_goes_to_a_deployment_it_fits(first_deploy, deploy_dir, master_key, restore):
    """llm2 serves phi3 with 4096, llm1 with 2048: a prompt for 4096 only ever reaches llm2 (LiteLLM's
    pre-call checks)."""
    backends = {b.name: {"address": b.fqdn, "port": OLLAMA_PORT, "models": list(b.models)} for b in BACKENDS}
    backends["llm2"]["context_windows"] = {MODEL: 2 * WINDOW}
    result = deploy(deploy_dir, litellm_backends=backends)
    assert result.returncode == 0, result.output[-3000:]
    reset_doubles()
    for _ in range(6):
        ask(master_key, WINDOW + 100, max_tokens=ANSWER)  # more than 2048 by any count, far less than 4096
    llm1, llm2 = (double(b, "/_double/stats")["calls"] for b in BACKENDS)
    assert llm1 == [] and len(llm2) == 6
    assert {c["num_ctx"] for c in llm2} == {2 * WINDOW} and all(c["prompt_tokens"] == c["prompt_eval_count"]
                                                                for c in llm2)
