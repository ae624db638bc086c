"""Steady load through a gateway with the official OpenAI client, every outcome counted.

The zero-downtime tests and the benchmark run a change under it: clients send chat completions
(the SDK's own retries off, so nothing hides a failure), and a long streaming completion can run
beside them to show it finishes whole. The tests' clients pause between requests: traffic through
every moment of the change, about 15 requests a second from 4 clients, while the change itself
keeps the CPU it needs (on 2 cores, clients without pause take all of it and every change under
test runs at half speed). The benchmark's clients send without pause: its figures are a busy
gateway's.
"""
from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field

import openai


@dataclass
class Outcomes:
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def sent(self) -> int:
        return self.ok + len(self.failures)

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for failure in self.failures:
            kinds[failure] = kinds.get(failure, 0) + 1
        return f"{len(self.failures)} of {self.sent} failed" + (f": {kinds}" if kinds else "")


def client(base_url: str, key: str, timeout: float = 120, ca_file: str | None = None) -> openai.OpenAI:
    """The official client, retries off; `ca_file`: the CA an HTTPS gateway's certificate is verified with."""
    http = (openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=ca_file), timeout=timeout)
            if ca_file else None)
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout, http_client=http)


PAUSE = 0.25  # seconds each test client waits after an answer


class SteadyLoad:
    """`clients` threads, each its own OpenAI client, sending completions until the block ends,
    `pause` seconds apart."""

    def __init__(self, base_url: str, key: str, model: str, clients: int = 4, ca_file: str | None = None,
                 timeout: float = 120, pause: float = PAUSE) -> None:
        self.base_url, self.key, self.model, self.clients, self.ca_file = base_url, key, model, clients, ca_file
        self.timeout, self.pause = timeout, pause
        self.outcomes = Outcomes()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _send(self) -> None:
        sdk = client(self.base_url, self.key, timeout=self.timeout, ca_file=self.ca_file)
        try:
            self._loop(sdk)
        finally:
            # Its keep-alive connection closed now, as a client that is done does: left to the
            # garbage collector, it would linger idle at the gateway (and keep a handover waiting).
            sdk.close()

    def _loop(self, sdk: openai.OpenAI) -> None:
        while not self._stop.is_set():
            try:
                answer = sdk.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8)
                good = bool(answer.choices and answer.choices[0].message.content)
                error = None if good else "empty answer"
            except Exception as exc:  # every failure counts, whatever it is
                error = f"{type(exc).__name__}: {str(exc)[:120]}"
            with self.outcomes.lock:
                if error:
                    self.outcomes.failures.append(error)
                else:
                    self.outcomes.ok += 1
            self._stop.wait(self.pause)

    def __enter__(self) -> SteadyLoad:
        self._threads = [threading.Thread(target=self._send, daemon=True) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=180)


class LongStream(threading.Thread):
    """One streaming completion, read to its end: the chunks it got and how it ended."""

    def __init__(self, base_url: str, key: str, model: str, max_tokens: int) -> None:
        super().__init__(daemon=True)
        self.sdk, self.model, self.max_tokens = client(base_url, key, timeout=600), model, max_tokens
        self.chunks, self.finish_reason, self.error = 0, None, None
        self.first_chunk = threading.Event()
        self.started_at = self.ended_at = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            stream = self.sdk.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": "Tell a long story."}],
                max_tokens=self.max_tokens, stream=True)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    self.chunks += 1
                    self.first_chunk.set()
                if chunk.choices and chunk.choices[0].finish_reason:
                    self.finish_reason = chunk.choices[0].finish_reason
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        self.ended_at = time.monotonic()
        self.first_chunk.set()
