"""What an OpenAI request may ask of an Ollama model, checked before any backend is called.

LiteLLM, with `drop_params`, drops what Ollama cannot do (`n`, `logprobs`, a forced `tool_choice`)
and answers 200 as if it had been done; it passes images to any model (Ollama then refuses them, or
an http URL where Ollama wants base64). A client relying on any of those gets a silent wrong
answer. Refused here with 400 and what to send instead:

- `n` other than 1: Ollama answers one choice per request;
- `logprobs` / `top_logprobs`: Ollama's native API gives none;
- `tool_choice` "required" or a named function: Ollama cannot force a tool call ("auto" and
  "none" are kept: "none" sends no tools, so none can be called); `functions` (the deprecated
  form): LiteLLM would pass it to Ollama unwrapped;
- images to a model not declared `vision: true`, and images as URLs (the gateway fetches nothing a
  client names; Ollama takes the image itself, as a data: URL).

Standard library only: the hook imports it; its tests run without LiteLLM.
"""
from __future__ import annotations

import json
from typing import Any


class Unfit(ValueError):
    """The request asks what Ollama cannot do: the message says what to send instead."""


def images_in(messages: Any) -> list[str]:
    """The image URLs of a chat request's messages (OpenAI's image_url content parts)."""
    urls = []
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "image_url":
                image = part.get("image_url")
                urls.append(str(image.get("url", "") if isinstance(image, dict) else image or ""))
    return urls


def check(data: dict[str, Any], vision: bool) -> None:
    """Raise Unfit for what an Ollama model cannot do; turn tool_choice "none" into no tools."""
    model = data.get("model")
    n = data.get("n")
    if n is not None and n != 1:
        raise Unfit(f"n={n!r} is not supported: an Ollama model gives one choice per request; leave n out "
                    "(or send 1) and send one request per answer wanted.")
    for field in ("logprobs", "top_logprobs"):
        if data.get(field) not in (None, False, 0):
            raise Unfit(f"{field}={data[field]!r} is not supported: Ollama gives no token log probabilities; "
                        f"leave {field} out.")
    if data.get("functions") is not None or data.get("function_call") is not None:
        raise Unfit("functions and function_call are the deprecated form of tools: send tools=[{'type': "
                    "'function', 'function': {...}}] (and tool_choice) instead.")
    choice = data.get("tool_choice")
    if choice not in (None, "auto", "none"):
        raise Unfit(f"tool_choice={json.dumps(choice)} is not supported: an Ollama model cannot be made to call a "
                    "tool; send tool_choice 'auto' (or leave it out) and name the tool in the prompt.")
    if choice == "none":
        data.pop("tools", None)
        data.pop("tool_choice", None)
    images = images_in(data.get("messages"))
    if images and not vision:
        raise Unfit(f"{model} takes no images (it is not a vision model); send text only, or use a model "
                    "declared with vision: true.")
    for url in images:
        if not url.startswith("data:"):
            raise Unfit(f"image_url {url[:60]!r} is not a data: URL: the gateway fetches no URL a client names; "
                        "send the image itself, as data:image/png;base64,...")
