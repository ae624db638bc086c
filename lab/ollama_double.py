#!/usr/bin/env python3
"""A faithful double of Ollama's HTTP API, for hosts where Ollama itself cannot be installed.

Standard library only: it runs with the lab host's own python3. It answers the calls LiteLLM,
the preflight checks and the operator tasks make (see shared/reference/ollama-api.md), and a test
steers it through a JSON behaviour file that is re-read whenever it changes:

    {"models": ["phi3:3.8b-mini-128k-instruct-q8_0"],  # tags this backend has pulled
     "token_delay": 0.0,     # seconds per generated token (slow backends, timeouts, least-busy)
     "fail": false,          # every model call answers 500
     "hang": false,          # every model call sleeps until the client gives up
     "reply": "...",         # the text a completion generates, one token per word
     "default_num_ctx": 4096}  # the window a request without options.num_ctx gets (OLLAMA_CONTEXT_LENGTH)

Like Ollama, each request is served with its own context window (`options.num_ctx`, else the
default): a prompt longer than the window is truncated, keeping its first NUM_KEEP tokens and its
end, with Ollama's "truncating input prompt" warning in the log, and `prompt_eval_count` shows
the truncated length. Tokens are counted by `tokenize` below: a word or a sign is one token,
a chat template marker such as <|user|> one more.

`GET /_double/stats` counts the requests served (load distribution) and lists the last model
calls (model, num_ctx as sent, prompt tokens before and after truncation, the options and
keep_alive as sent); `POST /_double/reset`
clears both. Neither path exists in Ollama, so no client can mistake them for its API.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = "0.12.3"
# Ollama reports the GGUF architecture as the family: Llama 3.x and Mistral are "llama".
FAMILIES = {"llama3": "llama", "llama3.1": "llama", "llama3.2": "llama", "mistral": "llama"}
DEFAULT_NUM_CTX = 4096  # Ollama 0.12's default context length
NUM_KEEP = 4  # tokens from the start of a prompt kept when it is truncated (Ollama's num_keep)
TOKEN = re.compile(r"\s*<\|\w+\|>|\s*\w+|\s*[^\w\s]")
DEFAULT_REPLY = (
    "The gateway answered through the lab backend and every token arrived in order as expected"
)


class Behaviour:
    """The behaviour file, re-read when its modification time changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._mtime: float | None = None
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self) -> dict[str, Any]:
        with self._lock:
            try:
                mtime = os.stat(self.path).st_mtime
            except FileNotFoundError:
                mtime = None
            if mtime != self._mtime:
                self._mtime = mtime
                self._data = {}
                if mtime is not None:
                    with open(self.path, encoding="utf-8") as handle:
                        self._data = json.load(handle)
            return dict(self._data)


def tokenize(text: str) -> list[str]:
    """The double's tokenizer: a chat template marker, a word or a sign (with its leading space) is one token."""
    return TOKEN.findall(text)


def chat_prompt(messages: list[Any]) -> str:
    """The prompt a chat template makes of the messages, as the model reads it."""
    parts = [f"<|{m.get('role', 'user')}|>\n{m.get('content') or ''}<|end|>\n" for m in messages if isinstance(m, dict)]
    return "".join(parts) + "<|assistant|>\n"


def fit_to_window(tokens: list[str], num_ctx: int) -> list[str]:
    """What Ollama's runner does with a prompt longer than the window: keep NUM_KEEP, drop the oldest rest."""
    if len(tokens) <= num_ctx:
        return tokens
    discard = len(tokens) - num_ctx
    kept = tokens[:NUM_KEEP] + tokens[NUM_KEEP + discard:]
    sys.stderr.write(f'level=WARN source=runner.go msg="truncating input prompt" limit={num_ctx} '
                     f"prompt={len(tokens)} keep={NUM_KEEP} new={len(kept)}\n")
    sys.stderr.flush()
    return kept


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def model_details(tag: str) -> dict[str, Any]:
    """Details Ollama derives from a model's GGUF header, made up from the tag deterministically."""
    base = tag.split(":", 1)[0]
    family = FAMILIES.get(base, base)
    variant = tag.split(":", 1)[1] if ":" in tag else "latest"
    parts = variant.split("-")
    size = next((p.upper() for p in parts if p[:-1].replace(".", "").isdigit() and p.endswith("b")), "7B")
    quant = next((p.upper() for p in parts if p.startswith("q") and "_" in p), "Q4_0")
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": size,
        "quantization_level": quant,
    }


def model_entry(tag: str) -> dict[str, Any]:
    name = tag if ":" in tag else f"{tag}:latest"
    digest = hashlib.sha256(name.encode()).hexdigest()
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-09-01T00:00:00Z",
        "size": 1_000_000_000 + int(digest[:6], 16) * 100,
        "digest": digest,
        "details": model_details(name),
    }


class OllamaHandler(BaseHTTPRequestHandler):
    server_version = "ollama-double"
    protocol_version = "HTTP/1.1"
    # Ollama's Go server sends every write at once (Go's TCP connections default to TCP_NODELAY).
    # Without it, a reply's headers and body are two small writes, and on a kept-alive connection
    # the body waits for the client's delayed ACK: 40 ms a call that Ollama does not have.
    disable_nagle_algorithm = True
    behaviour: Behaviour
    stats: Counter
    stats_lock = threading.Lock()

    # --- plumbing -------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _count(self) -> None:
        with self.stats_lock:
            self.stats[f"{self.command} {self.path.split('?', 1)[0]}"] += 1

    def _send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, status: int, text: str, head_only: bool = False) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def _read_json(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            self._send_json(400, {"error": "invalid character in request body"})
            return None
        if not isinstance(body, dict):
            self._send_json(400, {"error": "invalid request body"})
            return None
        return body

    def _chunk(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # --- models ---------------------------------------------------------------------------
    def _models(self) -> list[str]:
        tags = self.behaviour.get().get("models", [])
        return [t if ":" in t else f"{t}:latest" for t in tags]

    def _find(self, name: str) -> str | None:
        wanted = name if ":" in name else f"{name}:latest"
        return wanted if wanted in self._models() else None

    # --- routes ---------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._count()
        if self.path == "/":
            self._send_text(200, "Ollama is running", head_only=True)
        else:
            self._send_text(404, "404 page not found", head_only=True)

    def do_GET(self) -> None:
        self._count()
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send_text(200, "Ollama is running")
        elif path == "/api/version":
            self._send_json(200, {"version": VERSION})
        elif path == "/api/tags":
            self._send_json(200, {"models": [model_entry(t) for t in self._models()]})
        elif path == "/api/ps":
            self._send_json(200, {"models": self._loaded()})
        elif path == "/_double/stats":
            with self.stats_lock:
                self._send_json(200, {"requests": dict(self.stats),
                                      "calls": list(self.server.calls)})  # type: ignore[attr-defined]
        else:
            self._send_text(404, "404 page not found")

    def do_POST(self) -> None:
        self._count()
        path = self.path.split("?", 1)[0]
        routes = {
            "/api/show": self._show,
            "/api/chat": self._chat,
            "/api/generate": self._generate,
            "/api/embed": self._embed,
            "/_double/reset": self._reset,
        }
        route = routes.get(path)
        if route is None:
            self._send_text(404, "404 page not found")
            return
        body = self._read_json()
        if body is not None:
            route(body)

    def _loaded(self) -> list[dict[str, Any]]:
        loaded = getattr(self.server, "loaded", {})
        out = []
        for tag, (expires, context) in sorted(loaded.items()):
            entry = model_entry(tag)
            entry.pop("modified_at")
            entry.update(expires_at=expires, size_vram=entry["size"], context_length=context)
            out.append(entry)
        return out

    def _reset(self, _body: dict[str, Any]) -> None:
        with self.stats_lock:
            self.stats.clear()
            self.server.calls.clear()  # type: ignore[attr-defined]
        self._send_json(200, {"status": "reset"})

    def _show(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name")
        if not name:
            self._send_json(400, {"error": "model is required"})
            return
        tag = self._find(name)
        if tag is None:
            self._send_json(404, {"error": f"model '{name}' not found"})
            return
        details = model_details(tag)
        self._send_json(
            200,
            {
                "modelfile": f"FROM {tag}\n",
                "parameters": "stop \"<|end|>\"",
                "template": "{{ .Prompt }}",
                "details": details,
                "model_info": {f"{details['family']}.context_length": 131072},
                "capabilities": ["completion"],
            },
        )

    def _embed(self, body: dict[str, Any]) -> None:
        tag = self._model_or_error(body)
        if tag is None:
            return
        inputs = body.get("input") or []
        inputs = [inputs] if isinstance(inputs, str) else inputs
        vectors = []
        for text in inputs:
            digest = hashlib.sha256(str(text).encode()).digest()
            vectors.append([round(b / 255.0, 4) for b in digest[:8]])
        self._send_json(200, {"model": tag, "embeddings": vectors})

    def _model_or_error(self, body: dict[str, Any]) -> str | None:
        name = body.get("model")
        if not name:
            self._send_json(400, {"error": "model is required"})
            return None
        tag = self._find(name)
        if tag is None:
            self._send_json(404, {"error": f'model "{name}" not found, try pulling it first'})
            return None
        return tag

    def _chat(self, body: dict[str, Any]) -> None:
        if not isinstance(body.get("messages", []), list):
            self._send_json(400, {"error": "messages must be a list"})
            return
        self._complete(body, lambda text: {"message": {"role": "assistant", "content": text}})

    def _generate(self, body: dict[str, Any]) -> None:
        self._complete(body, lambda text: {"response": text}, final_extra={"context": [1, 2, 3]})

    def _complete(self, body: dict[str, Any], piece, final_extra: dict[str, Any] | None = None) -> None:
        tag = self._model_or_error(body)
        if tag is None:
            return
        behaviour = self.behaviour.get()
        if behaviour.get("hang"):
            time.sleep(3600)
            return
        if behaviour.get("fail"):
            self._send_json(500, {"error": "llama runner process has terminated: exit status 2"})
            return
        options = body.get("options") or {}
        sent_ctx = options.get("num_ctx")
        num_ctx = (sent_ctx if isinstance(sent_ctx, int) and sent_ctx > 0
                   else int(behaviour.get("default_num_ctx", DEFAULT_NUM_CTX)))
        self.server.loaded[tag] = (_now(), num_ctx)  # type: ignore[attr-defined]
        prompt = chat_prompt(body.get("messages") or []) if "messages" in body else str(body.get("prompt") or "")
        whole = tokenize(prompt)
        read = fit_to_window(whole, num_ctx)
        with self.stats_lock:
            self.server.calls.append({"model": tag, "num_ctx": sent_ctx,  # type: ignore[attr-defined]
                                      "prompt_tokens": len(whole), "prompt_eval_count": len(read),
                                      "num_predict": options.get("num_predict"),
                                      "stream": bool(body.get("stream", True)), "options": options,
                                      "keep_alive": body.get("keep_alive")})
        limit = options.get("num_predict")
        words = str(behaviour.get("reply", DEFAULT_REPLY)).split()
        done_reason = "stop"
        if isinstance(limit, int) and 0 <= limit < len(words):
            words, done_reason = words[:limit], "length"
        tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
        delay = float(behaviour.get("token_delay", 0.0))
        started = time.monotonic_ns()
        prompt_tokens = len(read)

        def stats() -> dict[str, Any]:
            total = time.monotonic_ns() - started
            return {
                "done": True,
                "done_reason": done_reason,
                "total_duration": total,
                "load_duration": 1_000_000,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": 2_000_000,
                "eval_count": len(tokens),
                "eval_duration": max(total - 3_000_000, 1),
                **(final_extra or {}),
            }

        if body.get("stream", True):
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for token in tokens:
                    if delay:
                        time.sleep(delay)
                    self._chunk({"model": tag, "created_at": _now(), **piece(token), "done": False})
                self._chunk({"model": tag, "created_at": _now(), **piece(""), **stats()})
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        if delay:
            time.sleep(delay * len(tokens))
        self._send_json(200, {"model": tag, "created_at": _now(), **piece("".join(tokens)), **stats()})


def serve(host: str, port: int, behaviour_file: str) -> ThreadingHTTPServer:
    handler = type("Handler", (OllamaHandler,), {"behaviour": Behaviour(behaviour_file), "stats": Counter()})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Ollama accepts many connections at once; the stdlib default backlog of 5 drops SYNs under load.
    server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family, "daemon_threads": True,
                                                          "request_queue_size": 128})
    server = server_class((host, port), handler)
    server.loaded = {}  # type: ignore[attr-defined]
    server.calls = deque(maxlen=200)  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("OLLAMA_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=11434)
    parser.add_argument("--behaviour", default="/etc/ollama-double.json")
    args = parser.parse_args(argv)
    server = serve(args.host, args.port, args.behaviour)
    print(f"Listening on {args.host}:{args.port} (version {VERSION})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
