"""The gateway's own cost per request, side by side in one run: the Ollama double called directly,
the serving proxy instance called directly, and the gateway's front; at 1 and 10 keep-alive
clients, p50, p95 and requests/s; the instance's CPU per request (its processes' user + system
time over the run); and where a worker's main thread spends it (py-spy, top frames by inclusive
time), written beside the figures so a regression shows where it came from.
"""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.measure import _serving, percentile
from lab import control, machines
from lab.topology import GATEWAY_PORT, MODELS, OLLAMA_PORT, LabHost, backends_of

CLIENTS = (1, 10)
# What the gateway should cost on this 2-core machine, with everything it promises on: its added p50
# at one client, its throughput at ten (three times the ~80/s LiteLLM's defaults reach here) and the
# instance's CPU per request (a third of their ~20 ms).
# Its memory stays at or under the 1.1 GiB one instance held then.
GOALS = {"p50 overhead, 1 client (ms)": 5.0, "requests/s through the gateway, 10 clients": 240.0,
         "CPU per request of the instance (ms)": 6.7, "time to first token added, p50, 1 client (ms)": 5.0,
         "memory of the instance (MiB)": 1126.0}
# Streaming: the double waits this long before each token, as a model generating ~50 tokens/s does,
# and answers this many: the time to the first token is then the backend's plus what the path adds.
TOKEN_DELAY = 0.02
STREAM_TOKENS = 4
PROFILE_FRAMES = 15
PY_SPY = Path(sys.executable).parent / "py-spy"
# The serving instance's processes (its main process and the workers it forked): user + system
# time in clock ticks, the ticks per second, and the sum of their proportional set sizes in KiB
# (pages the forked workers share with their parent counted once); run with the host's python3.
USAGE_SCRIPT = """
import os, subprocess, sys
main = subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", sys.argv[1]],
                      capture_output=True, text=True).stdout.strip()
ticks = kib = 0
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        if pid == main or fields[1] == main:
            ticks += int(fields[11]) + int(fields[12])
            kib += sum(int(line.split()[1]) for line in open(f"/proc/{pid}/smaps_rollup") if line.startswith("Pss:"))
    except OSError:
        continue
print(ticks, os.sysconf("SC_CLK_TCK"), kib)
"""


@dataclass(frozen=True)
class Route:
    """One way to the model: where requests go and what they look like there."""

    name: str
    host: str
    port: int
    path: str
    body: dict
    key: str | None = None


class KeepAliveClients:
    """Requests over one kept-alive connection per client thread, as the official SDKs send them."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.local = threading.local()
        self.payload = json.dumps(route.body).encode()
        self.headers = {"Content-Type": "application/json",
                        **({"Authorization": f"Bearer {route.key}"} if route.key else {})}

    def call(self) -> float:
        """One request; its time in ms."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.route.host, self.route.port, timeout=60)
        started = time.perf_counter()
        conn.request("POST", self.route.path, self.payload, self.headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{self.route.name}: HTTP {answer.status}")
        return (time.perf_counter() - started) * 1000

    def first_token(self) -> float:
        """One streamed request: ms until the first piece of generated text arrives (an Ollama NDJSON line
        or an OpenAI server-sent event whose delta carries content); the rest is read too."""
        for attempt in (1, 2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.route.host, self.route.port, timeout=60)
            started = time.perf_counter()
            try:
                conn.request("POST", self.route.path, self.payload, self.headers)
                answer = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed meanwhile: a new one, as HTTP clients do.
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        if answer.status != 200:
            raise RuntimeError(f"{self.route.name}: HTTP {answer.status}")
        first = None
        while first is None:
            line = answer.readline()
            if not line:
                raise RuntimeError(f"{self.route.name}: the stream ended before any text")
            if has_text(line):
                first = (time.perf_counter() - started) * 1000
        answer.read()
        return first

    def busy_until(self, stop: threading.Event, clients: int) -> None:
        """`clients` threads sending one request after another until `stop` is set."""
        def loop() -> None:
            while not stop.is_set():
                self.call()

        with ThreadPoolExecutor(max_workers=clients) as pool:
            for _ in range(clients):
                pool.submit(loop)

    def run(self, requests: int, clients: int) -> tuple[list[float], float]:
        """`requests` spread over `clients` threads: their times (ms) and the run's seconds."""
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            times = list(pool.map(lambda _: self.call(), range(requests)))
        return times, time.perf_counter() - started


def has_text(line: bytes) -> bool:
    """Whether a streamed line carries generated text: Ollama's {"message": {"content": ...}} or an OpenAI
    `data: {"choices": [{"delta": {"content": ...}}]}` event."""
    line = line.strip().removeprefix(b"data:").strip()
    if not line.startswith(b"{"):
        return False
    piece = json.loads(line)
    if "message" in piece:
        return bool(piece["message"].get("content"))
    return any((choice.get("delta") or {}).get("content") for choice in piece.get("choices") or [])


def serving_port(host: LabHost) -> int:
    """The serving instance's port, by the host's own rule (on_host/serving.py)."""
    return int(_serving(host).split("@", 1)[1].split(".", 1)[0])


def usage(host: LabHost, unit: str) -> tuple[float, float]:
    """The instance's CPU seconds so far and its memory now (MiB)."""
    ticks, per_second, kib = machines.ssh(host, f"python3 -c '{USAGE_SCRIPT}' {unit}").stdout.split()
    return int(ticks) / int(per_second), int(kib) / 1024

def paths(host: LabHost, port: int) -> list[Route]:
    """The double that serves mistral-7b alone (every gateway call lands on it), the serving
    instance, and the front: 16-token completions of the same model."""
    backend = backends_of([host])[1]
    key = control.master_key()
    chat = {"model": "mistral-7b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
    return [
        # The window the gateway sends with the model (its context_window): another one would make the
        # double load the model again, as Ollama does, at every change of path.
        Route("direct to Ollama double", backend.address, OLLAMA_PORT, "/api/chat",
              {"model": MODELS["mistral-7b"]["tag"], "messages": chat["messages"], "stream": False,
               "options": {"num_predict": 16, "num_ctx": MODELS["mistral-7b"]["context_window"]}}),
        Route("the instance directly", host.address, port, "/v1/chat/completions", chat, key),
        Route("through the gateway", host.address, GATEWAY_PORT, "/v1/chat/completions", chat, key),
    ]


def streamed(ways: list[Route]) -> list[Route]:
    """The same paths with the answer streamed, STREAM_TOKENS tokens long."""
    routes = []
    for way in ways:
        body = {**way.body, "stream": True}
        if "options" in body:
            body["options"] = {**body["options"], "num_predict": STREAM_TOKENS}
        else:
            body["max_tokens"] = STREAM_TOKENS
        routes.append(Route(way.name, way.host, way.port, way.path, body, way.key))
    return routes


def first_token_times(host: LabHost, requests: int, runs: int, figure) -> list:
    """Time to the first token of a streamed answer at 1 client, the double waiting TOKEN_DELAY before
    each token: directly, at the instance and through the front (p50, p95), in the same run."""
    ways = streamed(paths(host, serving_port(host)))
    callers = {way.name: KeepAliveClients(way) for way in ways}
    figures: dict[str, object] = {}
    with machines.double_behaviour(backends_of([host])[1], token_delay=TOKEN_DELAY):
        for _ in range(runs):
            for way in ways:
                # Warm up right before: an instance closes a connection idle for a few seconds, and
                # first_token() then opens another, which this request's time would carry.
                callers[way.name].first_token()
                times = [callers[way.name].first_token() for _ in range(requests)]
                for q in (50, 95):
                    name = f"time to first token p{q} {way.name}, 1 client(s)"
                    figures.setdefault(name, figure(name, "ms")).samples.append(percentile(times, q))
    return list(figures.values())


def worker_pid(host: LabHost, port: int) -> int | None:
    """The PID (as this machine sees it) of the serving instance's busiest worker: its command line
    names the host's own instance address and the port (the lab's gateways outside a network
    namespace listen on their own address), its parent is the instance's main process."""
    if host.namespace:
        return None  # its instances listen on 127.0.0.1 of its own namespace: not told apart here
    marker = f"--host {host.address} --port {port} "
    found: dict[int, tuple[int, int]] = {}  # pid: (parent, cpu ticks)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if "in_proxy/serve.py" in command and marker in command:
            found[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    workers = {pid: ticks for pid, (parent, ticks) in found.items() if parent in found}
    return max(workers, key=workers.get) if workers else None


# The worker's event loop: frames up to it are the same in every sample, a sample that ends there
# is the loop waiting (uvloop waits in C, below asyncio's Runner.run; asyncio's own loop in select).
LOOP_FRAMES = ("Runner.run (asyncio/runners.py", "select (selectors.py")


def profile(pid: int | None, seconds: float) -> tuple[Counter, Counter, int, int, str]:
    """py-spy's samples of the worker's main thread, idle ones included: per frame below the event
    loop its inclusive samples and its own (the frame running), all samples, the idle ones, and what
    went wrong (empty when nothing did)."""
    if pid is None:
        return (Counter(), Counter(), 0, 0,
                "no worker of the serving instance found (a host in a network namespace of its own?)")
    with tempfile.TemporaryDirectory() as work:
        raw = Path(work) / "raw.txt"
        done = subprocess.run([str(PY_SPY), "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-f", "raw",
                               "--threads", "--idle", "--nonblocking", "-o", str(raw)],
                              capture_output=True, text=True, timeout=seconds + 60)
        if done.returncode != 0 or not raw.exists():
            return Counter(), Counter(), 0, 0, f"py-spy failed: {done.stderr.strip()[-300:]}"
        frames: Counter = Counter()
        own: Counter = Counter()
        total = idle = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            thread, *calls = stack.split(";")
            if not thread.endswith("MainThread") or not count.isdigit():
                continue
            total += int(count)
            loop = max((i for i, call in enumerate(calls) if call.startswith(LOOP_FRAMES)), default=None)
            below = calls[loop + 1:] if loop is not None else calls
            if not below:
                idle += int(count)
                continue
            own[below[-1]] += int(count)
            for call in set(below):
                frames[call] += int(count)
        return frames, own, total, idle, ""


def profile_summary(frames: Counter, own: Counter, total: int, idle: int, problem: str) -> str:
    if problem or not total:
        return f"profile: {problem or 'no samples of the main thread'}\n"
    lines = [f"profile of one worker's main thread: {total} samples, busy {100 * (total - idle) / total:.0f} % "
             f"(the rest its event loop waiting); top {PROFILE_FRAMES} frames by inclusive time:"]
    for call, count in frames.most_common(PROFILE_FRAMES):
        lines.append(f"  {100 * count / total:5.1f} %  {call}")
    lines.append(f"top {PROFILE_FRAMES} frames by own time (the frame itself running):")
    for call, count in own.most_common(PROFILE_FRAMES):
        lines.append(f"  {100 * count / total:5.1f} %  {call}")
    return "\n".join(lines) + "\n"


def cost_per_request(host: LabHost, requests: int, runs: int, figure) -> tuple[list, str]:
    """The figures (built with `figure(name, unit)`, samples appended run by run) and the profile
    summary. The instance's CPU is counted over its direct and front runs at 10 clients."""
    port = serving_port(host)
    unit = f"litellm@{port}.service"
    ways = paths(host, port)
    callers = {way.name: KeepAliveClients(way) for way in ways}
    figures: dict[str, object] = {}

    def sample(name: str, unit_: str, value: float) -> None:
        if name not in figures:
            figures[name] = figure(name, unit_)
        figures[name].samples.append(value)

    for caller in callers.values():
        caller.run(20, 10)  # warm up: connections, the first loads
    for _ in range(runs):
        for clients in CLIENTS:
            for way in ways:
                before = usage(host, unit)[0] if way.name != ways[0].name else 0.0
                times, seconds = callers[way.name].run(requests, clients)
                sample(f"p50 {way.name}, {clients} client(s)", "ms", percentile(times, 50))
                sample(f"p95 {way.name}, {clients} client(s)", "ms", percentile(times, 95))
                sample(f"requests/s {way.name}, {clients} client(s)", "req/s", requests / seconds)
                if way.name != ways[0].name and clients == max(CLIENTS):
                    used = usage(host, unit)[0] - before
                    sample(f"CPU per request of the instance, {way.name}", "ms", 1000 * used / requests)
        sample("memory of the instance (PSS of its processes), after the run", "MiB", usage(host, unit)[1])
    # Where a worker's time goes, under 10 clients through the front.
    load_seconds = 5.0
    stop = threading.Event()

    loader = threading.Thread(target=callers[ways[-1].name].busy_until, args=(stop, max(CLIENTS)), daemon=True)
    loader.start()
    try:
        summary = profile_summary(*profile(worker_pid(host, port), load_seconds))
    finally:
        stop.set()
        loader.join(60)
    return list(figures.values()), summary
