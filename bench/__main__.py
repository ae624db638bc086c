"""`python -m bench [--runs N] [--smoke]`: benchmark figures against their floors, as a table and JSON.

Runs in the lab on gateways of its own (gw3..gw6), or with `--on` on lab gateways already deployed
(CI's smoke run starts from the tests' gw2 and gw1: no host is built, no first deploy measured).
Every figure is the median of N runs with min and max; each comparison is measured side by side in
the same run, because these machines are noisy and absolute times do not carry from one run to
the next. `--smoke` is one repetition with
few requests and no release change or fresh fleet: it proves the benchmark still works, its figures
mean little.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench import cost, measure
from gateway.table import table
from lab import control, topology
from lab.load import PAUSE

RESULTS = measure.REPO / "bench-results"
T = TypeVar("T")
STAGES: dict[str, float] = {}  # seconds each stage took, in the report too


def stage(name: str, measurement: Callable[..., T], *args, **kwargs) -> T:
    """Run one measurement and say on stderr how long it took: where a run's minutes go."""
    started = time.perf_counter()
    result = measurement(*args, **kwargs)
    STAGES[name] = time.perf_counter() - started
    print(f"bench: {name} took {STAGES[name]:.0f} s", file=sys.stderr, flush=True)
    return result


def median(figure: measure.Figure) -> float:
    return figure.summary()["median"]


def ratio(a: measure.Figure, b: measure.Figure) -> float:
    return median(a) / median(b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each figure (default 3)")
    parser.add_argument("--requests", type=int, default=200, help="requests per latency/throughput figure")
    parser.add_argument("--smoke", action="store_true", help="one repetition, 20 requests: does it still work?")
    parser.add_argument("--fleet", type=int, choices=(2, 3, 4), default=4,
                        help="gateways for the scaling figures (default 4; CI's smoke run uses 2)")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="where to write the figures")
    parser.add_argument("--on", type=lambda names: [topology.by_name(n) for n in names.split(",")], metavar="GW,GW",
                        help="lab gateways already deployed with the lab's settings to measure on (at least "
                             "--fleet of them): nothing is built, the fresh hosts' figures are left out")
    args = parser.parse_args(argv)
    if args.on is not None and len(args.on) < args.fleet:
        parser.error(f"--on names {len(args.on)} gateway(s); --fleet {args.fleet} needs as many")
    runs, requests = (1, 20) if args.smoke else (args.runs, args.requests)
    if os.geteuid() != 0:
        print("bench: the lab needs root", file=sys.stderr)
        return 1
    control.up()
    with tempfile.TemporaryDirectory() as work:
        lab = measure.Lab(Path(work), args.on)
        first, first_floor = stage("first deploy", measure.first_deploy, lab, runs)
        rerun, rerun_floor = stage("no-change re-run", measure.rerun_no_change, lab, runs)
        scaling = stage("fleet scaling", measure.fleet_scaling, lab, runs, args.fleet)
        status_one, status_all = stage("fab status", measure.fab_status, lab, runs, args.fleet)
        dns_fleet, dns_single = stage("DNS preflight", measure.dns_dead_nameserver, runs)
        latency, profile = stage("cost per request", cost.cost_per_request, lab.gateways[0], requests, runs,
                                 measure.Figure)
        first_token = stage("time to first token", cost.first_token_times, lab.gateways[0],
                            20 if args.smoke else 100, runs, measure.Figure)
        default, tried = stage("workers", measure.worker_throughput, lab, requests, runs,
                               (1,) if args.smoke else (1, 2, 4))
        context = stage("context check", measure.on_off_cost, lab, requests, runs, "litellm_context_check",
                        "context check")
        # The same measurement as the context check's, of another setting (two switch-overs): a real
        # run makes it, the smoke run has proved the measurement works.
        metrics = [] if args.smoke else stage("metrics callback", measure.on_off_cost, lab, requests, runs,
                                               "litellm_metrics", "metrics callback")
        # A smoke run's client pauses between requests, as the tests' do: the changes keep their CPU.
        changes = stage("changes under load", measure.zero_downtime, lab, runs, clients=1 if args.smoke else 4,
                        releases=not args.smoke, pause=PAUSE if args.smoke else 0.0)
        # Fresh hosts cost minutes: the smoke run leaves this one out (the lab tests deploy from the
        # wheels and from an index), a real run measures it.
        firsts = [] if args.smoke or not lab.fresh else stage("fleet first deploys", measure.fleet_first_deploy, lab,
                                                              runs, args.fleet)
    by_name = {f.name: f for f in latency}
    p50_overhead = {c: median(by_name[f"p50 through the gateway, {c} client(s)"])
                    - median(by_name[f"p50 direct to Ollama double, {c} client(s)"]) for c in cost.CLIENTS}
    rate = median(by_name[f"requests/s through the gateway, {max(cost.CLIENTS)} client(s)"])
    cpu = median(by_name["CPU per request of the instance, through the gateway"])
    memory = median(by_name["memory of the instance (PSS of its processes), after the run"])
    by_name.update({f.name: f for f in first_token})
    first_token_added = (median(by_name["time to first token p50 through the gateway, 1 client(s)"])
                         - median(by_name["time to first token p50 direct to Ollama double, 1 client(s)"]))
    best = max(tried, key=median)
    seed = next(f for f in tried if "(seed" in f.name)
    change = {f.name.split(": ", 1)[-1] if f.unit == "requests" else f.name: f for f in changes}
    cached = [f for f in firsts if "this machine" in f.name]
    goals = [
        *([("first deploy / floor", ratio(first, first_floor), 1.25)] if first else []),
        ("no-change re-run / pyinfra floor", ratio(rerun, rerun_floor), 2.0),
        (f"no-change re-run, {args.fleet} gateways / 1", ratio(scaling[-1], scaling[0]), 1.5),
        (f"fab status, {args.fleet} gateways / 1", ratio(status_all, status_one), 1.5),
        ("DNS preflight, 10 names dead NS / one timeout", ratio(dns_fleet, dns_single), 1.5),
        ("p50 overhead, 1 client (ms)", p50_overhead[1], cost.GOALS["p50 overhead, 1 client (ms)"]),
        ("p50 overhead, 10 clients (ms)", p50_overhead[10], 10.0),
        ("requests/s through the gateway, 10 clients", rate, None),
        ("CPU per request of the instance (ms)", cpu, cost.GOALS["CPU per request of the instance (ms)"]),
        ("time to first token added, p50, 1 client (ms)", first_token_added,
         cost.GOALS["time to first token added, p50, 1 client (ms)"]),
        ("memory of the instance (MiB)", memory, cost.GOALS["memory of the instance (MiB)"]),
        ("context check: p50 with it on - off (ms)", median(context[0]) - median(context[2]), 5.0),
        *([("metrics callback: p50 with it on - off (ms)", median(metrics[0]) - median(metrics[2]), 5.0)]
          if metrics else []),
        ("default workers' req/s / best tried", ratio(default, best), None),
        ("default workers' req/s / seed's 1 worker", ratio(default, seed), None),
        ("context check: req/s with it on / off", ratio(context[1], context[3]), None),
        *([("metrics callback: req/s with it on / off", ratio(metrics[1], metrics[3]), None)] if metrics else []),
        *[(f"failed requests, {name}", median(f), 0.0) for name, f in change.items()
          if f.unit == "requests" and "comparison" not in name],
        *([(f"first deploy from the wheel cache, {args.fleet} gateways / 1", ratio(cached[-1], cached[0]), 1.5)]
          if cached else []),
    ]
    figures = [*([first] if first else []), first_floor, rerun, rerun_floor, *scaling, status_one, status_all,
               dns_fleet, dns_single, *latency, *first_token, *tried, *context, *metrics, *changes, *firsts]
    rows = [[f.name, f"{s['median']:.2f}", f"{s['min']:.2f}", f"{s['max']:.2f}", f"{s['n']}", f.unit]
            for f in figures for s in [f.summary()]]
    print(table(("FIGURE", "MEDIAN", "MIN", "MAX", "N", "UNIT"), rows))
    print()
    goal_rows = [[name, f"{value:.2f}", "-" if limit is None else f"<= {limit}",
                  "-" if limit is None else ("met" if value <= limit else "NOT MET")] for name, value, limit in goals]
    # The default must be as fast as the best setting tried: within noise of it, and above the seed's;
    # the context check and the metrics callback may each cost at most a tenth of the throughput.
    lower_bounds = {"default workers' req/s / best tried": 0.95, "default workers' req/s / seed's 1 worker": 1.0,
                    **{name: goal for name, goal in cost.GOALS.items() if name.startswith("requests/s")},
                    "context check: req/s with it on / off": 0.9, "metrics callback: req/s with it on / off": 0.9}
    for row in goal_rows:
        if row[0] in lower_bounds:
            value = float(row[1])
            row[2:] = [f">= {lower_bounds[row[0]]}", "met" if value >= lower_bounds[row[0]] else "NOT MET"]
    print(table(("COMPARISON", "VALUE", "GOAL", ""), goal_rows))
    print()
    print(profile, end="")
    measure.write_report(args.json, runs, requests, args.smoke, figures, goals, STAGES)
    profile_file = args.json.with_suffix(".profile.txt")
    profile_file.write_text(profile)
    print(f"profile written to {profile_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
