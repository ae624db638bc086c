"""What an OpenAI request may ask of an Ollama model (in_proxy/ollama_fit.py): refused with what to
send instead, where LiteLLM would drop it and answer as if it had been done."""
from __future__ import annotations

import pytest

from in_proxy.ollama_fit import Unfit, check

PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAAB"
         "JRU5ErkJggg==")
ASK = [{"role": "user", "content": "hi"}]
SEEN = [{"role": "user", "content": [{"type": "text", "text": "what is it?"}, {"type": "image_url",
                                                                              "image_url": {"url": PIXEL}}]}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize("fields, says", [
    ({"n": 2}, "n=2 is not supported: an Ollama model gives one choice per request"),
    ({"logprobs": True}, "logprobs=True is not supported: Ollama gives no token log probabilities"),
    ({"top_logprobs": 3}, "top_logprobs=3 is not supported"),
    ({"tool_choice": "required", "tools": TOOLS}, 'tool_choice="required" is not supported: an Ollama model cannot'),
    ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "tools": TOOLS},
     'tool_choice={"type": "function", "function": {"name": "get_weather"}} is not supported'),
    ({"functions": [{"name": "f"}]}, "functions and function_call are the deprecated form of tools"),
])
def test_what_ollama_cannot_do_is_refused_with_what_to_send_instead(fields, says):
    with pytest.raises(Unfit) as refused:
        check({"model": "llama3.1-8b", "messages": ASK, **fields}, vision=False)
    assert str(refused.value).startswith(says), str(refused.value)


def test_what_it_can_do_passes_as_sent_and_tool_choice_none_sends_no_tools():
    for fields in ({"n": 1}, {"logprobs": False}, {"tool_choice": "auto", "tools": TOOLS}, {"tools": TOOLS},
                   {"parallel_tool_calls": False, "tools": TOOLS}):
        data = {"model": "llama3.1-8b", "messages": ASK, **fields}
        check(data, vision=False)
        assert data == {"model": "llama3.1-8b", "messages": ASK, **fields}
    data = {"model": "llama3.1-8b", "messages": ASK, "tools": TOOLS, "tool_choice": "none"}
    check(data, vision=False)
    assert data == {"model": "llama3.1-8b", "messages": ASK}


def test_images_reach_a_vision_model_only_and_only_as_data():
    check({"model": "llava-7b", "messages": SEEN}, vision=True)
    with pytest.raises(Unfit, match=r"^phi3-3.8b takes no images \(it is not a vision model\)"):
        check({"model": "phi3-3.8b", "messages": SEEN}, vision=False)
    url = "https://images.example/cat.png"
    by_url = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
    with pytest.raises(Unfit, match=rf"^image_url '{url}' is not a data: URL: the gateway fetches"):
        check({"model": "llava-7b", "messages": by_url}, vision=True)
