"""The Ollama double answers as shared/reference/ollama-api.md says Ollama does."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lab.ollama_double import VERSION, serve

PHI3 = "phi3:3.8b-mini-128k-instruct-q8_0"
MISTRAL = "mistral:7b"  # its template takes tools; phi3's does not


@pytest.fixture
def double(tmp_path: Path):
    behaviour = tmp_path / "behaviour.json"
    behaviour.write_text(json.dumps({"models": [PHI3, "mistral:7b"]}))
    server = serve("127.0.0.1", 0, str(behaviour))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield base, behaviour
    server.shutdown()
    server.server_close()


def call(base: str, path: str, body: dict | None = None, method: str | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method or ("POST" if data else "GET"))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def test_root_and_version(double):
    base, _ = double
    assert call(base, "/")[::2] == (200, "Ollama is running")
    status, _, body = call(base, "/", method="HEAD")
    assert status == 200 and body == ""
    assert json.loads(call(base, "/api/version")[2]) == {"version": VERSION}


def test_tags_lists_the_configured_models_with_details(double):
    base, _ = double
    models = json.loads(call(base, "/api/tags")[2])["models"]
    assert [m["name"] for m in models] == [PHI3, "mistral:7b"]
    phi3 = models[0]
    assert set(phi3) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert len(phi3["digest"]) == 64
    assert phi3["details"]["family"] == "phi3"
    assert phi3["details"]["parameter_size"] == "3.8B"
    assert phi3["details"]["quantization_level"] == "Q8_0"


def test_show_accepts_model_or_legacy_name_and_errors_like_ollama(double):
    base, _ = double
    assert call(base, "/api/show", {})[::2] == (400, '{"error": "model is required"}')
    status, _, body = call(base, "/api/show", {"model": "nope"})
    assert status == 404 and json.loads(body) == {"error": "model 'nope' not found"}
    for key in ("model", "name"):
        status, _, body = call(base, "/api/show", {key: PHI3})
        shown = json.loads(body)
        assert status == 200 and shown["model_info"]["phi3.context_length"] == 131072
        assert set(shown) >= {"modelfile", "parameters", "template", "details", "model_info", "capabilities"}


def test_chat_streams_ndjson_and_ends_with_stats(double):
    base, _ = double
    status, headers, body = call(base, "/api/chat", {"model": PHI3, "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in body.splitlines()]
    assert all(not line["done"] for line in lines[:-1]) and lines[0]["message"]["role"] == "assistant"
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "stop" and final["message"]["content"] == ""
    for stat in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
                 "eval_duration"):
        assert isinstance(final[stat], int)
    assert final["eval_count"] == len(lines) - 1


def test_chat_without_stream_and_num_predict_gives_length(double):
    base, _ = double
    body = {"model": PHI3, "messages": [{"role": "user", "content": "hi"}], "stream": False,
            "options": {"num_predict": 3}}
    status, headers, text = call(base, "/api/chat", body)
    answer = json.loads(text)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert answer["done_reason"] == "length" and answer["eval_count"] == 3
    assert len(answer["message"]["content"].split()) == 3


def test_generate_and_embed(double):
    base, _ = double
    answer = json.loads(call(base, "/api/generate", {"model": "mistral:7b", "prompt": "hi", "stream": False})[2])
    assert answer["response"] and answer["done"] and "context" in answer
    embedded = json.loads(call(base, "/api/embed", {"model": "mistral:7b", "input": ["a", "b"]})[2])
    assert len(embedded["embeddings"]) == 2


def test_unknown_model_is_404_with_ollamas_message(double):
    base, _ = double
    status, _, body = call(base, "/api/chat", {"model": "llama3:8b", "messages": []})
    assert status == 404 and json.loads(body) == {"error": 'model "llama3:8b" not found, try pulling it first'}


def test_behaviour_file_changes_models_failures_and_speed(double):
    base, behaviour = double
    behaviour.write_text(json.dumps({"models": ["mistral:7b"], "fail": True}))
    time.sleep(0.01)
    assert [m["name"] for m in json.loads(call(base, "/api/tags")[2])["models"]] == ["mistral:7b"]
    assert call(base, "/api/chat", {"model": "mistral:7b", "messages": []})[0] == 500
    behaviour.write_text(json.dumps({"models": ["mistral:7b"], "token_delay": 0.05, "reply": "one two three four"}))
    started = time.monotonic()
    call(base, "/api/chat", {"model": "mistral:7b", "messages": [], "stream": False})
    assert time.monotonic() - started >= 0.2


def test_stats_count_requests_and_reset(double):
    base, _ = double
    call(base, "/api/version")
    call(base, "/api/version")
    counts = json.loads(call(base, "/_double/stats")[2])["requests"]
    assert counts["GET /api/version"] == 2
    call(base, "/_double/reset", {})
    assert "GET /api/version" not in json.loads(call(base, "/_double/stats")[2])["requests"]


def test_ps_lists_models_after_use(double):
    base, _ = double
    assert json.loads(call(base, "/api/ps")[2]) == {"models": []}
    call(base, "/api/chat", {"model": PHI3, "messages": [], "stream": False})
    loaded = json.loads(call(base, "/api/ps")[2])["models"]
    assert [m["name"] for m in loaded] == [PHI3] and "expires_at" in loaded[0] and "size_vram" in loaded[0]


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def chat_once(base: str, content: str, options: dict | None = None) -> dict:
    body = {"model": PHI3, "messages": [{"role": "user", "content": content}], "stream": False}
    if options is not None:
        body["options"] = options
    return json.loads(call(base, "/api/chat", body)[2])


def test_a_prompt_within_the_window_is_read_whole(double, capfd):
    base, _ = double
    # <|user|>, 100 words, <|end|>, <|assistant|>: 103 tokens.
    assert chat_once(base, words(100), {"num_ctx": 103})["prompt_eval_count"] == 103
    assert "truncating input prompt" not in capfd.readouterr().err


def test_a_prompt_over_the_window_is_cut_keeping_its_end_with_ollamas_warning(double, capfd):
    base, _ = double
    answer = chat_once(base, words(6000), {"num_ctx": 2048})
    assert answer["prompt_eval_count"] == 2048 and answer["done"] is True  # answered 200 all the same
    assert 'msg="truncating input prompt" limit=2048 prompt=6003 keep=4 new=2048' in capfd.readouterr().err
    calls = json.loads(call(base, "/_double/stats")[2])["calls"]
    assert calls[-1] == {"model": PHI3, "num_ctx": 2048, "prompt_tokens": 6003, "prompt_eval_count": 2048,
                         "num_predict": None, "stream": False, "options": {"num_ctx": 2048}, "keep_alive": None}


def test_without_num_ctx_the_default_window_applies_and_ps_shows_it(double):
    base, behaviour = double
    assert chat_once(base, words(5000))["prompt_eval_count"] == 4096  # Ollama 0.12's default
    assert json.loads(call(base, "/_double/stats")[2])["calls"][-1]["num_ctx"] is None
    loaded = json.loads(call(base, "/api/ps")[2])["models"]
    assert [(m["name"], m["context_length"]) for m in loaded] == [(PHI3, 4096)]
    behaviour.write_text(json.dumps({"models": [PHI3], "default_num_ctx": 2048}))
    assert chat_once(base, words(5000))["prompt_eval_count"] == 2048
    chat_once(base, "hi", {"num_ctx": 8192})
    assert json.loads(call(base, "/api/ps")[2])["models"][0]["context_length"] == 8192


# Tools, structured outputs and embeddings, read back with the official `ollama` client (its response
# models parse every reply, as they parse Ollama's own).
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "required": ["city", "unit"],
                   "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "kelvin"]},
                                  "days": {"type": "integer"}}}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}, "dst": {"type": "boolean"}}}}}


def test_a_model_given_tools_calls_those_the_prompt_names_and_answers_their_results(double):
    import ollama

    base, _ = double
    sdk = ollama.Client(host=base)
    asked = [{"role": "user", "content": "Use get_time, then get_weather for Paris"}]
    answer = sdk.chat(model=MISTRAL, messages=asked, tools=[WEATHER, CLOCK])
    calls = answer.message.tool_calls
    assert [c.function.name for c in calls] == ["get_time", "get_weather"]  # in the order the prompt names them
    assert calls[1].function.arguments == {"city": "city", "unit": "celsius", "days": 1}
    assert calls[0].function.arguments == {"zone": "zone", "dst": True}
    assert answer.message.content == "" and answer.done_reason == "stop" and answer.eval_count > 0
    # Streamed: the calls arrive in a piece of their own, the last piece has the counts.
    pieces = list(sdk.chat(model=MISTRAL, messages=asked, tools=[WEATHER, CLOCK], stream=True))
    streamed = [c.function.name for p in pieces for c in p.message.tool_calls or []]
    assert streamed == ["get_time", "get_weather"] and pieces[-1].done and pieces[-1].prompt_eval_count
    # No tool named: the first one. The tools' definitions are part of the prompt the model reads.
    plain = sdk.chat(model=MISTRAL, messages=[{"role": "user", "content": "hello"}])
    first = sdk.chat(model=MISTRAL, messages=[{"role": "user", "content": "hello"}], tools=[WEATHER, CLOCK])
    assert [c.function.name for c in first.message.tool_calls] == ["get_weather"]
    assert first.prompt_eval_count > plain.prompt_eval_count + 20
    # The tool's result sent back: the model answers in text, calling nothing.
    follow = sdk.chat(model=MISTRAL, tools=[WEATHER, CLOCK], messages=[
        *asked, {"role": "assistant", "content": "", "tool_calls": [c.model_dump() for c in calls]},
        {"role": "tool", "content": "12:00"}, {"role": "tool", "content": "sunny"}])
    assert follow.message.content and not follow.message.tool_calls


def test_a_format_makes_the_answer_json_and_a_schema_an_instance_of_it(double):
    import ollama
    import pydantic

    class Unit(pydantic.BaseModel):
        name: str
        grams: float

    class Recipe(pydantic.BaseModel):
        title: str
        serves: int
        vegetarian: bool
        kind: str = pydantic.Field(json_schema_extra={"enum": ["soup", "cake"]})
        units: list[Unit]
        note: str | None = None

    base, _ = double
    sdk = ollama.Client(host=base)
    json_answer = sdk.chat(model=PHI3, messages=[{"role": "user", "content": "hi"}], format="json")
    assert isinstance(json.loads(json_answer.message.content), dict)
    recipe = Recipe.model_validate_json(sdk.chat(model=PHI3, messages=[{"role": "user", "content": "hi"}],
                                                 format=Recipe.model_json_schema()).message.content)
    assert recipe.kind == "soup" and recipe.units and recipe.serves == 1
    streamed = "".join(p.message.content for p in sdk.chat(model=PHI3, messages=[{"role": "user", "content": "hi"}],
                                                          format=Recipe.model_json_schema(), stream=True))
    assert Recipe.model_validate_json(streamed) == recipe


def test_embedding_models_give_vectors_of_their_dimension_the_same_for_the_same_text(double):
    import ollama

    base, behaviour = double
    behaviour.write_text(json.dumps({"models": [PHI3, "nomic-embed-text:latest"]}))
    sdk = ollama.Client(host=base)
    batch = sdk.embed(model="nomic-embed-text", input=["a cat", "a dog"])
    assert [len(v) for v in batch.embeddings] == [768, 768] and batch.embeddings[0] != batch.embeddings[1]
    assert sdk.embed(model="nomic-embed-text", input="a cat").embeddings[0] == batch.embeddings[0]
    assert sdk.embeddings(model="nomic-embed-text", prompt="a cat").embedding == batch.embeddings[0]
    assert batch.prompt_eval_count == 4


def test_a_model_answers_only_what_its_capabilities_say_with_ollamas_400(double):
    """/api/show's capabilities, and Ollama's refusals: tools to a model whose template takes none,
    images to one without vision, a chat to an embedding model."""
    import ollama

    base, behaviour = double
    behaviour.write_text(json.dumps({"models": [PHI3, MISTRAL, "llava:7b", "nomic-embed-text:latest"]}))
    sdk = ollama.Client(host=base)
    assert {tag: sdk.show(tag).capabilities for tag in (PHI3, MISTRAL, "llava:7b", "nomic-embed-text")} == {
        PHI3: ["completion"], MISTRAL: ["completion", "tools"], "llava:7b": ["completion", "vision"],
        "nomic-embed-text": ["embedding"]}
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    seen = [{"role": "user", "content": "What is this?", "images": [pixel]}]
    assert sdk.chat(model="llava:7b", messages=seen).message.content
    for model, request, message in [
        (PHI3, {"tools": [WEATHER]}, f"{PHI3} does not support tools"),
        (MISTRAL, {"messages": seen}, f"{MISTRAL} does not support vision"),
        ("nomic-embed-text", {}, '"nomic-embed-text:latest" does not support chat'),
    ]:
        with pytest.raises(ollama.ResponseError) as refused:
            sdk.chat(model=model, **{"messages": [{"role": "user", "content": "hi"}], **request})
        assert (refused.value.status_code, refused.value.error) == (400, message)
