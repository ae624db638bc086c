"""`python -m bench.fleet [--runs N] [--smoke]`: the fleet's figures, side by side, as a table and JSON.

Through the lab fleet's floating address (3 gateways, HTTPS from the lab's own CA): requests per
second with 1, 2 and 3 gateways taking requests (the others drained); p50/p95 through the address
beside the same requests sent to one gateway's own front (what the fleet's extra hop adds); and
failed requests, every one counted with the SDK's retries off, during a rolling change and while a
gateway host is lost (stopped cleanly, killed outright, the address holder stopped). `--smoke`:
one repetition, few requests, nothing rolled or lost: does it still work?
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.measure import Figure, Lab, percentile, write_report
from gateway.table import table
from lab import control, machines
from lab.fleet import FLEET_CA_DIR
from lab.load import SteadyLoad, client
from lab.topology import FLEET_VIP, GATEWAY_PORT, fleet_hosts
from on_host.deadline import wait_until

RESULTS = Path(__file__).resolve().parent / "results"
FLEET = fleet_hosts(3)
MODEL = "phi3-3.8b"
SETTINGS = {"litellm_timeout": 10}  # a killed gateway's requests end after 60 s at the front (--timeout)
CLIENTS = 4


def url(address: str) -> str:
    return f"https://{address}:{GATEWAY_PORT}/v1"


def holder() -> str:
    import subprocess

    for host in FLEET:
        shown = subprocess.run(["ip", "-n", host.namespace, "-o", "addr", "show"], capture_output=True, text=True)
        if f" {FLEET_VIP}/" in shown.stdout:
            return host.name
    raise RuntimeError("no fleet gateway holds the address")


def completions(address: str, requests: int, concurrency: int) -> tuple[list[float], float]:
    """Latencies (ms) of `requests` completions at `concurrency`, and the requests per second."""
    local = threading.local()
    ca = str(FLEET_CA_DIR / "ca.crt")

    def one(_: int) -> float:
        if not hasattr(local, "sdk"):
            local.sdk = client(url(address), control.fleet_key(), timeout=60, ca_file=ca)
        started = time.perf_counter()
        local.sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8)
        return (time.perf_counter() - started) * 1000

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(concurrency * 2)))  # warm up: connections, TLS
        started = time.perf_counter()
        samples = list(pool.map(one, range(requests)))
    return samples, requests / (time.perf_counter() - started)


def failures_during(action) -> int:
    with SteadyLoad(url(FLEET_VIP), control.fleet_key(), MODEL, clients=CLIENTS,
                    ca_file=str(FLEET_CA_DIR / "ca.crt"), timeout=30, pause=0) as load:
        time.sleep(2)
        action()
        time.sleep(3)
    if load.outcomes.ok < 20:
        raise RuntimeError(f"the load did not run: {load.outcomes.summary()}")
    return len(load.outcomes.failures)


def wait_all_up(lab: Lab, timeout: float = 240) -> None:
    def healthy() -> bool:
        try:
            lab.fab(FLEET, "status", **SETTINGS)
        except RuntimeError:
            return False
        return True

    if not wait_until(healthy, timeout, 3)[0]:
        raise RuntimeError("the fleet is not healthy again")


def measure(lab: Lab, runs: int, requests: int, smoke: bool) -> list[Figure]:
    figures: dict[str, Figure] = {}

    def add(name: str, unit: str, value: float) -> None:
        figures.setdefault(name, Figure(name, unit)).samples.append(value)

    control.ensure_fleet(len(FLEET))
    base_timeout = SETTINGS["litellm_timeout"]
    lab.deploy(FLEET, **SETTINGS)
    wait_all_up(lab)
    concurrency = 8
    for _ in range(runs):
        for serving in (1, 2, 3):
            drained = FLEET[serving:]
            for host in drained:
                lab.fab(FLEET, "drain", host.fqdn, **SETTINGS)
            try:
                _, rate = completions(FLEET_VIP, requests, concurrency)
            finally:
                for host in drained:
                    lab.fab(FLEET, "undrain", host.fqdn, **SETTINGS)
            add(f"requests/s through the fleet address, {serving} gateway(s), {concurrency} clients", "req/s", rate)
        time.sleep(3)  # undrained gateways pass their checks again
        for clients in (1, 10):
            through, _ = completions(FLEET_VIP, requests, clients)
            direct, _ = completions(FLEET[0].address, requests, clients)
            for label, p in (("p50", 50), ("p95", 95)):
                add(f"{label} through the fleet address, {clients} client(s)", "ms", percentile(through, p))
                add(f"{label} to one gateway's own front, {clients} client(s)", "ms", percentile(direct, p))
        if smoke:  # the fleet's tests roll and lose hosts under load already (tests/lab/test_fleet.py)
            continue
        add("failed requests: rolling restart (fab restart), 3 gateways", "requests",
            failures_during(lambda: lab.fab(FLEET, "restart", **SETTINGS)))
        lost = next(h for h in FLEET if h.name != holder())
        add("failed requests: a gateway host stopped cleanly", "requests",
            failures_during(lambda lost=lost: machines.stop(lost)))
        machines.ensure_host(lost)
        wait_all_up(lab)
        changed = {**SETTINGS, "litellm_timeout": base_timeout + 1 if SETTINGS["litellm_timeout"] == base_timeout
                   else base_timeout}
        add("failed requests: rolling config change (deploy)", "requests",
            failures_during(lambda changed=changed: lab.deploy(FLEET, **changed)))
        SETTINGS.update(changed)  # what the fleet runs now: fab status finds no drift against it
        lost = next(h for h in FLEET if h.name != holder())
        add(f"failed requests: a gateway host killed ({CLIENTS} clients)", "requests",
            failures_during(lambda lost=lost: machines.crash(lost)))
        machines.ensure_host(lost)
        wait_all_up(lab)
        old = next(h for h in FLEET if h.name == holder())
        add(f"failed requests: the address holder stopped cleanly ({CLIENTS} clients)", "requests",
            failures_during(lambda old=old: machines.stop(old)))
        machines.ensure_host(old)
        wait_all_up(lab)
    SETTINGS["litellm_timeout"] = base_timeout
    lab.deploy(FLEET, **SETTINGS)
    return list(figures.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help="one repetition, 20 requests, nothing rolled or lost")
    parser.add_argument("--json", type=Path, default=RESULTS / "fleet-latest.json")
    parser.add_argument("--timeout", type=int, default=SETTINGS["litellm_timeout"],
                        help="litellm_timeout the fleet is deployed with (default 10)")
    args = parser.parse_args(argv)
    SETTINGS["litellm_timeout"] = args.timeout
    runs, requests = (1, 20) if args.smoke else (args.runs, args.requests)
    if os.geteuid() != 0:
        print("bench: the lab needs root", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as work:
        figures = measure(Lab(Path(work)), runs, requests, args.smoke)
    by_name = {f.name: statistics.median(f.samples) for f in figures}
    rates = [by_name[f"requests/s through the fleet address, {n} gateway(s), 8 clients"] for n in (1, 2, 3)]
    comparisons = [
        ("req/s, 2 gateways / 1", rates[1] / rates[0], None),
        ("req/s, 3 gateways / 1", rates[2] / rates[0], None),
        *[(f"{label} added by the fleet address, {c} client(s) (ms)",
           by_name[f"{label} through the fleet address, {c} client(s)"]
           - by_name[f"{label} to one gateway's own front, {c} client(s)"],
           None) for c in (1, 10) for label in ("p50", "p95")],
        *[(name, by_name[name], 0.0) for name in by_name
          if name.startswith("failed requests") and "killed" not in name],
    ]
    rows = [[f.name, f"{s['median']:.2f}", f"{s['min']:.2f}", f"{s['max']:.2f}", f"{s['n']}", f.unit]
            for f in figures for s in [f.summary()]]
    print(table(("FIGURE", "MEDIAN", "MIN", "MAX", "N", "UNIT"), rows))
    print()
    print(table(("COMPARISON", "VALUE", "GOAL", ""), [
        [name, f"{value:.2f}", "-" if goal is None else f"<= {goal}",
         "-" if goal is None else ("met" if value <= goal else "NOT MET")] for name, value, goal in comparisons]))
    write_report(args.json, runs, requests, args.smoke, figures, comparisons)
    return 0


if __name__ == "__main__":
    sys.exit(main())
