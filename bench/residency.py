"""`python -m bench.residency [--requests N] [--on GW] [--backends 2|4] [--strategies ...] [--json FILE]`:
routing strategies side by side on backends whose memory holds two of the seed's five models, every
model on every backend, 8 clients sending a skewed mix (a few models popular, a long tail). Figures
per strategy: loads, evictions, p50/p95 latency, completions per second and the p95 of the rarest
model.

Runs on the benchmark's gw3 and its backends (llm3, llm4: the Ollama double with `vram_mib`, sizes
of the real models and a load time of LOAD_SECONDS_PER_GIB; with `--backends 4` llm1 and llm2 too,
which the lab's tests use: not while they run), or with `--on` on another lab gateway.
Each strategy starts from backends with nothing loaded and sends the same sequence of requests.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.measure import Lab, percentile
from gateway.table import table
from lab import control, machines, topology
from lab.fleet import fleet_data
from lab.load import client
from lab.topology import BACKENDS, BENCH_GATEWAYS, GATEWAY_PORT, MODELS, OLLAMA_PORT, backends_of

MIX = {"phi3-3.8b": 0.40, "llama3-8b": 0.25, "mistral-7b": 0.17, "llama3.1-8b": 0.11, "gemma2-9b": 0.07}
VRAM_MIB = 10000  # two of the five models at once (3.9-5.2 GB each)
LOAD_SECONDS_PER_GIB = 0.5  # a 4 GiB model loads in 2 s (real ones: 4-20 s)
CLIENTS = 8
STRATEGIES = {  # the name in the table: the settings deployed
    "least-busy": {"litellm_routing_strategy": "least-busy"},
    "simple-shuffle": {"litellm_routing_strategy": "simple-shuffle"},
    "residency": {"litellm_routing_strategy": "least-busy", "litellm_residency_routing": True},
}


def double(backend, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://{backend.address}:{OLLAMA_PORT}{path}", data=data)
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def every_model_in_little_memory(backends, stack: contextlib.ExitStack) -> None:
    """Every model on every backend, memory for two, until `stack` closes (their behaviour put back)."""
    for backend in backends:
        stack.enter_context(machines.double_behaviour(
            backend, models=[m["tag"] for m in MODELS.values()], vram_mib=VRAM_MIB,
            load_seconds_per_gib=LOAD_SECONDS_PER_GIB, token_delay=0.01))


def empty(backends) -> None:
    """Nothing loaded, every count at zero."""
    for backend in backends:
        for loaded in double(backend, "/api/ps")["models"]:
            try:  # a model pulled and removed since may still be loaded: Ollama says 404 then
                double(backend, "/api/generate", {"model": loaded["name"], "keep_alive": 0})
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise
        double(backend, "/_double/reset", {})


def run(url: str, key: str, sequence: list[str]) -> tuple[list[tuple[str, float]], float]:
    """Each request's model and seconds, and the whole run's seconds."""
    sdk = client(url, key, timeout=300)

    def one(model: str) -> tuple[str, float]:
        started = time.perf_counter()
        sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=16)
        return model, time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        done = list(pool.map(one, sequence))
    return done, time.perf_counter() - started


def figures(done: list[tuple[str, float]], seconds: float, backends) -> dict:
    scheduler = [double(b, "/_double/stats")["scheduler"] for b in backends]
    latencies = [s for _, s in done]
    rarest = min(MIX, key=MIX.get)
    return {
        "loads": sum(sum(s["loads"].values()) for s in scheduler),
        "loads_by_model": dict(sum((Counter(s["loads"]) for s in scheduler), Counter()).most_common()),
        "evictions": sum(sum(s["evictions"].values()) for s in scheduler),
        "p50_s": percentile(latencies, 50), "p95_s": percentile(latencies, 95),
        "completions_per_s": len(done) / seconds,
        "rarest_p95_s": percentile([s for m, s in done if m == rarest], 95),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.residency", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--on", type=topology.by_name, default=BENCH_GATEWAYS[0], metavar="GW")
    parser.add_argument("--backends", type=int, choices=(2, 4), default=2)
    parser.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES),
                        help="only these (the comparison needs least-busy and residency)")
    parser.add_argument("--json", type=Path, help="where to write the figures")
    args = parser.parse_args(argv)
    host = args.on
    backends = backends_of([host]) + (tuple(b for b in BACKENDS if b not in backends_of([host]))
                                      if args.backends == 4 else ())
    control.ensure_extra_host(host)
    sequence = random.Random(7).choices(list(MIX), weights=list(MIX.values()), k=args.requests)
    every_model = {name: {**spec, "models": list(MODELS)}
                   for name, spec in fleet_data(backends)["litellm_backends"].items()}
    results = {}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as work:
        every_model_in_little_memory(backends, stack)
        lab = Lab(Path(work), [host])
        for name, settings in STRATEGIES.items():
            if name not in args.strategies:
                continue
            lab.deploy([host], litellm_backends=every_model, **settings)
            empty(backends)
            time.sleep(3)  # the residency poll has seen the empty backends
            done, seconds = run(f"http://{host.address}:{GATEWAY_PORT}/v1", control.master_key(), sequence)
            results[name] = figures(done, seconds, backends)
            print(f"bench.residency: {name}: {results[name]}", file=sys.stderr, flush=True)
        lab.deploy([host])  # the lab's own settings again
    rows = [[name, r["loads"], r["evictions"], f"{r['p50_s']:.2f}", f"{r['p95_s']:.2f}",
             f"{r['completions_per_s']:.1f}", f"{r['rarest_p95_s']:.2f}"] for name, r in results.items()]
    print(table(["strategy", "loads", "evictions", "p50 s", "p95 s", "completions/s", "rarest p95 s"], rows))
    if args.json:
        args.json.write_text(json.dumps({"requests": args.requests, "clients": CLIENTS, "mix": MIX,
                                         "backends": [b.name for b in backends],
                                         "vram_mib": VRAM_MIB, "results": results}, indent=2) + "\n")
    if "least-busy" not in results or "residency" not in results:
        return 0
    base, ours = results["least-busy"], results["residency"]
    print(f"residency against least-busy: loads {base['loads']}/{max(ours['loads'], 1)} = "
          f"{base['loads'] / max(ours['loads'], 1):.1f}x fewer (goal >= 5), p95 {ours['p95_s'] / base['p95_s']:.2f} "
          f"(goal <= 0.5), throughput {ours['completions_per_s'] / base['completions_per_s']:.2f}x (goal >= 1.5), "
          f"rarest p95 {ours['rarest_p95_s'] / base['rarest_p95_s']:.2f} (goal <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
