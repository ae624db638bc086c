#!/usr/bin/env python3
"""Smoke check of a gateway: ready, exactly the expected models, and one real chat completion.

Runs on the gateway host with its python3 (`python3 -m on_host.smoke --url http://127.0.0.1:4000
--key-env-file /etc/litellm/litellm.env --expect phi3-3.8b ...`; gateway/commands.py builds the
line). It prints one line per check and never prints the key.
Exit status: 0 all passed, 1 a check failed, 2 bad arguments or unreadable key.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from .deadline import wait_until
from .readiness import PATH, pin_argument, trust_pinned, wait_ready

KEY_VAR = "LITELLM_MASTER_KEY"


class CheckFailed(Exception):
    pass


class Unavailable(CheckFailed):
    """HTTP 503: nothing behind the front answers at this moment (it is marking an instance down or up)."""


def read_key(env_file: str) -> str:
    with open(env_file, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(f"{KEY_VAR}="):
                return line.split("=", 1)[1].strip()
    raise CheckFailed(f"{env_file} holds no {KEY_VAR}")


def request(url: str, key: str | None = None, body: dict | None = None, timeout: float = 30) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read().decode(errors="replace")[:500]
        return error.code, text


def check_models(base: str, key: str, expected: list[str]) -> list[str]:
    status, body = request(f"{base}/v1/models", key)
    if status == 503:
        raise Unavailable(f"/v1/models answered HTTP 503: {body}")
    if status != 200:
        raise CheckFailed(f"/v1/models answered HTTP {status}: {body}")
    listed = sorted(entry["id"] for entry in body.get("data", []))
    if expected and listed != sorted(expected):
        missing = sorted(set(expected) - set(listed))
        extra = sorted(set(listed) - set(expected))
        raise CheckFailed(f"/v1/models lists {listed}; missing {missing}, unexpected {extra}")
    return listed


def check_completion(base: str, key: str, model: str, timeout: float) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
    status, answer = request(f"{base}/v1/chat/completions", key, body, timeout=timeout)
    if status != 200:
        raise CheckFailed(f"chat completion with {model} answered HTTP {status}: {answer}")
    content = answer["choices"][0]["message"]["content"]
    if not content:
        raise CheckFailed(f"chat completion with {model} came back empty")
    return content


def check_embedding(base: str, key: str, model: str, timeout: float) -> str:
    status, answer = request(f"{base}/v1/embeddings", key, {"model": model, "input": "Say hello."}, timeout=timeout)
    if status != 200:
        raise CheckFailed(f"embedding with {model} answered HTTP {status}: {answer}")
    vector = answer["data"][0]["embedding"]
    if not vector:
        raise CheckFailed(f"embedding with {model} came back empty")
    return f"a vector of {len(vector)}"


def ready_with_models(base: str, key: str, expected: list[str], timeout: float) -> list[str]:
    """Wait for readiness, then list the models. Through the front, the readiness answer can come
    from an instance the front is just marking down (a thawed or slow one): its 503 until the front
    marks it up again is waited out within the same deadline, never past it."""
    deadline = time.monotonic() + timeout

    def attempt() -> tuple[str, list[str] | Unavailable]:
        ready, answer = wait_ready(base, max(deadline - time.monotonic(), 0.0))
        if not ready:
            raise CheckFailed(f"{PATH} did not answer healthy within {timeout:.0f} s (last: {answer})")
        try:
            return answer, check_models(base, key, expected)
        except Unavailable as unavailable:
            return answer, unavailable

    _, (answer, models) = wait_until(attempt, timeout, 1.0, good=lambda got: not isinstance(got[1], Unavailable))
    if isinstance(models, Unavailable):
        raise models
    print(f"ok   readiness: {answer}")
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Smoke check of a LiteLLM gateway.")
    parser.add_argument("--url", required=True, help="gateway base URL, e.g. http://127.0.0.1:4000")
    key_source = parser.add_mutually_exclusive_group(required=True)
    key_source.add_argument("--key-env-file", help=f"file with a {KEY_VAR}= line (the gateway's env file)")
    key_source.add_argument("--key-file", help="file holding only the key")
    parser.add_argument("--expect", nargs="*", default=[], help="exactly these models must be listed")
    parser.add_argument("--model", help="model for the completion (default: first expected/listed)")
    parser.add_argument("--embedding-model", help="no chat model: an embedding request with this one instead")
    parser.add_argument("--ready-timeout", type=float, default=120)
    parser.add_argument("--timeout", type=float, default=60, help="seconds for the completion")
    pin_argument(parser)
    args = parser.parse_args(argv)
    trust_pinned(args.tls_pin)
    base = args.url.rstrip("/")
    try:
        if args.key_env_file:
            key = read_key(args.key_env_file)
        else:
            with open(args.key_file, encoding="utf-8") as handle:
                key = handle.read().strip()
    except (OSError, CheckFailed) as error:
        print(f"FAIL key: {error}")
        return 2
    try:
        listed = ready_with_models(base, key, args.expect, args.ready_timeout)
        print(f"ok   models: {', '.join(listed)}")
        if args.embedding_model and not args.model:
            print(f"ok   embedding with {args.embedding_model}: "
                  f"{check_embedding(base, key, args.embedding_model, args.timeout)}")
            return 0
        model = args.model or (args.expect or listed)[0]
        content = check_completion(base, key, model, args.timeout)
        print(f"ok   completion with {model}: {content[:60]!r}")
    except CheckFailed as error:
        print(f"FAIL {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
