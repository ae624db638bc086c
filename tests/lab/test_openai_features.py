"""A drop-in for OpenAI clients: tool calls, structured outputs, embeddings and streamed usage through
gw2 with a team key, as the official OpenAI client uses them; what Ollama cannot do is a clear 400,
never a 500 or a silent drop; tool definitions, schemas and embedding inputs count against the
window. The Ollama doubles answer as Ollama does (tools, format, /api/embed, capabilities)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import openai
import pydantic
import pytest

from lab.topology import GATEWAY_PORT, MODELS
from on_host.deadline import wait_until
from tests.lab.conftest import TEST_GATEWAY, serving
from tests.lab.test_fabfile import fab
from tests.lab.test_metrics import scrape, total

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]
URL = f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1"
TEAM = "openai-features"
TOOLS_MODEL = "llama3.1-8b"  # its template takes tools; phi3's, llama3's and gemma2's do not
VISION_MODEL, EMBEDDING_MODEL = "llava-7b", "nomic-embed-text"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAAB"
         "JRU5ErkJggg==")


def make_key(tmp_path_factory, team: str, *flags: str) -> str:
    tmp = tmp_path_factory.mktemp(team)
    fab(tmp, "keys.revoke", "--team", team)  # an earlier run's key, if any (the lab's keys file persists)
    made = fab(tmp, "keys.create", "--team", team, *flags)
    assert made.returncode == 0, made.stdout + made.stderr
    return re.search(r"sk-[0-9a-f]{64}", made.stdout).group(0)


@pytest.fixture(scope="module")
def key(first_deploy, tmp_path_factory):
    """A team key on gw2 (1000 requests a minute, 512 tokens per answer)."""
    yield make_key(tmp_path_factory, TEAM, "--max-tokens", "512", "--rpm", "1000")
    fab(tmp_path_factory.mktemp("revoke"), "keys.revoke", "--team", TEAM)


@pytest.fixture(scope="module")
def sdk(key):
    return openai.OpenAI(base_url=URL, api_key=key, max_retries=0, timeout=60)


def test_the_examples_of_the_using_page_run_as_written(key):
    """docs/using.md's Python examples, each run as it is, with the client's own variables set."""
    page = (REPO / "docs/using.md").read_text()
    examples = re.findall(r"```python\n(.*?)```", page.split("### Tool calls, structured outputs, embeddings")[1], re.S)
    assert len(examples) == 3
    env = {**os.environ, "OPENAI_BASE_URL": URL, "OPENAI_API_KEY": key}
    printed = []
    for example in examples:
        ran = subprocess.run([sys.executable, "-c", example], env=env, capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stderr[-2000:]
        printed.append(ran.stdout)
    tool, city, vectors = printed
    assert tool.splitlines()[0] == "get_weather {'city': 'city'}" and tool.splitlines()[1], tool
    assert city.startswith("name=") and "population=" in city, city
    assert vectors == "2 768\n", vectors


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_a_tool_call_parses_and_the_tools_result_is_answered(sdk):
    asked = ask("What is the weather in Paris? Use get_weather.")
    answer = sdk.chat.completions.create(model=TOOLS_MODEL, messages=asked, tools=[WEATHER, CLOCK])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert set(json.loads(call.function.arguments)) == {"city", "unit"}
    follow = sdk.chat.completions.create(model=TOOLS_MODEL, tools=[WEATHER, CLOCK], messages=[
        *asked, choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear", "celsius": 21}'}])
    assert follow.choices[0].finish_reason == "stop" and follow.choices[0].message.content
    assert not follow.choices[0].message.tool_calls


def test_parallel_tool_calls_come_with_indices_0_and_1_streamed_and_the_stream_helper_assembles_them(sdk):
    asked = ask("Use get_time for Europe/Paris, then get_weather for Paris.")
    answer = sdk.chat.completions.create(model=TOOLS_MODEL, messages=asked, tools=[WEATHER, CLOCK])
    calls = answer.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_time", "get_weather"] and len({c.id for c in calls}) == 2
    assert all(isinstance(json.loads(c.function.arguments), dict) for c in calls)
    chunks = list(sdk.chat.completions.create(model=TOOLS_MODEL, messages=asked, tools=[WEATHER, CLOCK], stream=True))
    indices = [(d.index, d.function.name) for c in chunks for d in (c.choices[0].delta.tool_calls or [])
               if c.choices]
    assert indices == [(0, "get_time"), (1, "get_weather")], indices
    with sdk.chat.completions.stream(model=TOOLS_MODEL, messages=asked, tools=[WEATHER, CLOCK]) as stream:
        final = stream.get_final_completion()
    assembled = final.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in assembled] == [
        (c.function.name, json.loads(c.function.arguments)) for c in calls]


class City(pydantic.BaseModel):
    name: str
    population: int
    capital: bool
    districts: list[str]


def test_structured_outputs_are_json_and_parse_into_the_clients_model(sdk):
    plain = sdk.chat.completions.create(model="mistral-7b", messages=ask("Describe Paris as JSON."),
                                        response_format={"type": "json_object"})
    assert isinstance(json.loads(plain.choices[0].message.content), dict)
    parsed = sdk.chat.completions.parse(model="mistral-7b", messages=ask("Describe Paris."), response_format=City)
    city = parsed.choices[0].message.parsed
    assert isinstance(city, City) and city.districts and isinstance(city.population, int)


def test_embeddings_for_one_input_and_a_batch_same_text_same_vector(sdk):
    one = sdk.embeddings.create(model=EMBEDDING_MODEL, input="the gateway")
    assert len(one.data) == 1 and len(one.data[0].embedding) == 768 and one.usage.prompt_tokens > 0
    batch = sdk.embeddings.create(model=EMBEDDING_MODEL, input=["a cat", "the gateway", "a dog"])
    assert [d.index for d in batch.data] == [0, 1, 2] and {len(d.embedding) for d in batch.data} == {768}
    assert batch.data[1].embedding == one.data[0].embedding and batch.data[0].embedding != batch.data[2].embedding
    assert batch.usage.prompt_tokens > one.usage.prompt_tokens


def test_a_stream_asked_for_its_usage_ends_with_it(sdk):
    chunks = list(sdk.chat.completions.create(model="phi3-3.8b", messages=ask("hello"), max_tokens=8, stream=True,
                                              stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    assert usage and usage.completion_tokens > 0 and usage.prompt_tokens > 0
    assert not any(c.usage for c in chunks[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_images_reach_a_vision_model_as_data(sdk):
    seen = [{"role": "user", "content": [{"type": "text", "text": "What is in this picture?"},
                                         {"type": "image_url", "image_url": {"url": PIXEL}}]}]
    assert sdk.chat.completions.create(model=VISION_MODEL, messages=seen, max_tokens=16).choices[0].message.content


@pytest.mark.parametrize("model, fields, says", [
    ("phi3-3.8b", {"n": 2}, "n=2 is not supported"),
    ("phi3-3.8b", {"logprobs": True, "top_logprobs": 2}, "logprobs=True is not supported"),
    (TOOLS_MODEL, {"tools": [WEATHER], "tool_choice": "required"}, 'tool_choice="required" is not supported'),
    ("phi3-3.8b", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PIXEL}}]}]},
     "phi3-3.8b takes no images"),
    (VISION_MODEL, {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://images.example/cat.png"}}]}]}, "is not a data: URL"),
    # Ollama's own 400 for a model whose template takes no tools comes through as a 400 too.
    ("gemma2-9b", {"tools": [WEATHER]}, "does not support tools"),
])
def test_what_ollama_cannot_do_is_a_400_that_says_so(sdk, model, fields, says):
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=model, **{"messages": ask("hi"), "max_tokens": 8, **fields})
    assert refused.value.status_code == 400 and says in str(refused.value), str(refused.value)


def test_tool_definitions_a_schema_and_embedding_inputs_count_against_the_window(sdk):
    window = MODELS[TOOLS_MODEL]["context_window"]
    wordy = {"type": "function", "function": {"name": "lookup", "description": "word " * window,
                                              "parameters": {"type": "object", "properties": {}}}}
    assert sdk.chat.completions.create(model=TOOLS_MODEL, messages=ask("hi"), max_tokens=8).choices
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=TOOLS_MODEL, messages=ask("hi"), max_tokens=8, tools=[wordy])
    assert refused.value.code == "context_length_exceeded", refused.value
    schema = {"type": "object", "properties": {f"field_{i}": {"type": "string", "description": "word " * 20}
                                               for i in range(window // 20)}}
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model=TOOLS_MODEL, messages=ask("hi"), max_tokens=8, response_format={
            "type": "json_schema", "json_schema": {"name": "wide", "schema": schema}})
    assert refused.value.code == "context_length_exceeded", refused.value
    long = "word " * MODELS[EMBEDDING_MODEL]["context_window"]
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model=EMBEDDING_MODEL, input=["short", long])
    assert refused.value.code == "context_length_exceeded" and "input[1]" in str(refused.value), refused.value


def test_embeddings_are_limited_by_team_keys_and_counted_in_the_metrics(first_deploy, tmp_path_factory):
    key = make_key(tmp_path_factory, "embed-rpm", "--rpm", "3")
    limited = openai.OpenAI(base_url=URL, api_key=key, max_retries=0, timeout=60)
    port = int(serving().split("@")[1].split(".")[0])
    metric = "litellm_proxy_total_requests_metric_total"
    before = total(scrape(port), metric, team="embed-rpm", requested_model=EMBEDDING_MODEL)
    outcomes = []
    for _ in range(5):
        try:
            limited.embeddings.create(model=EMBEDDING_MODEL, input="hello")
            outcomes.append(200)
        except openai.RateLimitError:
            outcomes.append(429)
    fab(tmp_path_factory.mktemp("revoke"), "keys.revoke", "--team", "embed-rpm")
    assert outcomes.count(200) == 3 and outcomes.count(429) == 2, outcomes
    # The callback counts after the answer went out.
    _, body = wait_until(lambda: scrape(port), 20, 1, good=lambda body: total(
        body, metric, team="embed-rpm", requested_model=EMBEDDING_MODEL) >= before + 3)
    assert total(body, metric, team="embed-rpm", requested_model=EMBEDDING_MODEL) >= before + 3
