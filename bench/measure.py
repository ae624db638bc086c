"""The measurements: each returns the samples of a figure and of its floor, taken side by side."""
from __future__ import annotations

import http.client
import json
import shlex
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from gateway import wheels
from gateway.commands import serving_command
from gateway.lock import read_lock, release_dir
from gateway.preflight import dns as dns_checks
from gateway.services.host import HOST_LIB
from gateway.settings import DEFAULTS, load
from lab import control, machines
from lab.faults import release_does_not_start
from lab.fleet import fleet_data, write_inventory
from lab.load import SteadyLoad
from lab.topology import BENCH_GATEWAYS, GATEWAY_PORT, LabHost
from on_host.deadline import wait_until

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OTHER_RELEASE = "1.108.6"  # a second real LiteLLM release with its lock in locks/, for release changes


@dataclass
class Figure:
    name: str
    unit: str
    samples: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        return {"median": statistics.median(self.samples), "min": min(self.samples), "max": max(self.samples),
                "n": len(self.samples), "unit": self.unit}


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


class Lab:
    """Deploys and commands against the benchmark's gateways, through the real entry points: its own
    (gw3..gw6, built fresh where a figure needs it), or lab gateways already deployed (`fresh` False:
    nothing is built, and the figures of fresh hosts are left out)."""

    def __init__(self, work: Path, gateways: list[LabHost] | None = None) -> None:
        self.work = work
        self.count = 0
        self.fresh = gateways is None
        self.gateways = list(BENCH_GATEWAYS) if gateways is None else gateways

    def inventory(self, hosts: list[LabHost], **overrides) -> Path:
        self.count += 1
        return write_inventory(self.work / f"inventory_{self.count}.py", hosts, **overrides)

    def pyinfra(self, inventory: Path, deploy: str = "deploy.py") -> None:
        run_entry_point("pyinfra", "-y", str(inventory), deploy)

    def deploy(self, hosts: list[LabHost], **overrides) -> float:
        inventory = self.inventory(hosts, **overrides)
        return timed(lambda: self.pyinfra(inventory))

    def fab(self, hosts: list[LabHost], *args: str, **overrides) -> float:
        inventory = self.inventory(hosts, **overrides)
        env = {"FABRIC_LITELLM_INVENTORY": str(inventory), "PATH": str(BIN) + ":/usr/bin:/bin"}
        return timed(lambda: run_entry_point("fab", *args, env=env))


def run_entry_point(program: str, *args: str, env: dict[str, str] | None = None) -> None:
    """Run one of the venv's commands from the repository; a failure raises with its own output."""
    result = subprocess.run([str(BIN / program), *args], cwd=REPO, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{program} {' '.join(args)} failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")


def floor_install(host: LabHost, venv: str) -> str:
    """The shell commands that install into `venv` exactly what the deploy installed on `host`: its
    lock's wheel set (already unpacked there by the deploy), hash-checked, no index, no resolving.
    Sends the requirements file first, so the commands time only the install."""
    settings = load(fleet_data())
    lock, problem = read_lock(settings.requirements)
    if lock is None:
        raise RuntimeError(problem)
    target = wheels.parse_probe(machines.ssh(host, wheels.probe_command()).stdout)
    wanted = wheels.fetch(lock, target, Path(settings.wheel_cache))  # the deploy just filled the cache
    requirements = f"{venv}.requirements"  # the lock, too long for a command line: sent on stdin
    subprocess.run(machines.ssh_command(host, f"cat > {shlex.quote(requirements)}"), input=wanted.requirements,
                   text=True, check=True, capture_output=True, timeout=60)
    return f"python3 -m venv {venv} && {wheels.pip_install_command(wanted, venv, requirements)}"


def first_deploy(lab: Lab, runs: int) -> tuple[Figure | None, Figure]:
    """A deploy to a fresh host, against pip install of the same wheels into a fresh venv plus proxy
    start, on that host. On gateways already deployed, the floor alone."""
    deploy, floor = Figure("first deploy to a fresh host", "s"), Figure("floor: pip install + start to readiness", "s")
    host = lab.gateways[0]
    for _ in range(runs):
        if lab.fresh:
            control.ensure_extra_host(host, fresh=True)
            deploy.samples.append(lab.deploy([host]))
        install = floor_install(host, "/root/floor")
        script = (
            "set -e; rm -rf /root/floor; "
            f"s=$(date +%s.%N); {install}; "
            # The deployed config's hook imports in_proxy/ from where the proxy's own unit finds it.
            "systemd-run --unit=bench-floor --collect --quiet -p EnvironmentFile=/etc/litellm/litellm.env "
            f"-p Environment=PYTHONPATH={HOST_LIB} "
            f"/root/floor/bin/litellm --config /etc/litellm/config.yaml --host {host.address} "
            f"--port {GATEWAY_PORT + 20}; "
            "until python3 -c 'import urllib.request; urllib.request.urlopen("
            f"\"http://{host.address}:{GATEWAY_PORT + 20}/health/readiness\")' 2>/dev/null; do sleep 0.2; "
            # Not for ever: a proxy that never gets ready fails the figure (and says so) within 5 minutes.
            "t=$((${t:-0} + 1)); [ $t -lt 1500 ] || { systemctl stop bench-floor; exit 1; }; done; "
            "e=$(date +%s.%N); systemctl stop bench-floor; rm -rf /root/floor /root/floor.requirements; "
            "python3 -c \"print($e - $s)\""
        )
        floor.samples.append(float(machines.ssh(host, script, timeout=1800).stdout.strip().splitlines()[-1]))
    return deploy if deploy.samples else None, floor


def rerun_no_change(lab: Lab, runs: int) -> tuple[Figure, Figure]:
    rerun, floor = Figure("re-run, nothing changed", "s"), Figure("floor: pyinfra connect + one no-op operation", "s")
    host = lab.gateways[:1]
    lab.deploy(host)
    inventory = lab.inventory(host)
    for _ in range(runs):
        rerun.samples.append(timed(lambda: lab.pyinfra(inventory)))
        floor.samples.append(timed(lambda: lab.pyinfra(inventory, "bench/floor_deploy.py")))
    return rerun, floor


def fleet_scaling(lab: Lab, runs: int, fleet: int = 4) -> list[Figure]:
    """The no-change re-run on 1, 2, ... `fleet` gateways (the last figure is the whole fleet)."""
    sizes = sorted({1, 2, fleet})
    figures = [Figure(f"re-run, nothing changed, {n} gateway(s)", "s") for n in sizes]
    hosts = lab.gateways[:fleet]
    for host in hosts if lab.fresh else ():
        control.ensure_extra_host(host)
    lab.deploy(hosts)
    for _ in range(runs):
        for figure, n in zip(figures, sizes, strict=True):
            figure.samples.append(lab.deploy(hosts[:n]))
    return figures


def fab_status(lab: Lab, runs: int, fleet: int = 4) -> tuple[Figure, Figure]:
    one, every = Figure("fab status, 1 gateway", "s"), Figure(f"fab status, {fleet} gateways", "s")
    for _ in range(runs):
        one.samples.append(lab.fab(lab.gateways[:1], "status"))
        every.samples.append(lab.fab(lab.gateways[:fleet], "status"))
    return one, every


def dns_dead_nameserver(runs: int, timeout: float = 2.0) -> tuple[Figure, Figure]:
    fleet, single = Figure("DNS preflight, 10 names, dead nameserver", "s"), Figure("one lookup timeout", "s")
    for _ in range(runs):
        names = [f"bench{i}.lab.test" for i in range(10)]
        fleet.samples.append(timed(lambda names=names: dns_checks.check_fleet(names, ["127.0.10.54"], timeout)))
        single.samples.append(timeout)
    return fleet, single


def _post(url: str, body: dict, key: str | None = None) -> float:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def _latencies(call: Callable[[], float], requests: int, concurrency: int) -> list[float]:
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda _: call(), range(requests)))


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def worker_throughput(lab: Lab, requests: int, runs: int,
                      workers: tuple[int, ...] = (1, 2, 4)) -> tuple[Figure, list[Figure]]:
    """Requests per second through the gateway at 10 concurrent clients, for each worker count in
    `workers` (1 is the seed's setting, LiteLLM's own default) and the deploy's default as it
    resolves on the host ("auto": one per CPU). Returns the default's figure and all of them; a
    count is measured once, so the default is not compared with a second run of itself."""
    host = lab.gateways[0]
    key = control.master_key()
    cpus = int(machines.ssh(host, "getconf _NPROCESSORS_ONLN").stdout)
    default_count = load(fleet_data()).resolved(cpus).workers
    call = lambda: _post(f"http://{host.address}:{GATEWAY_PORT}/v1/chat/completions",  # noqa: E731
                         {"model": "mistral-7b", "messages": [{"role": "user", "content": "hi"}]}, key)
    figures: dict[int, Figure] = {}
    for count in sorted({*workers, default_count}):
        notes = [n for n, applies in (("seed", count == 1),
                                      (f"default: {DEFAULTS['litellm_workers']}", count == default_count)) if applies]
        lab.deploy([host], litellm_workers=count)
        _latencies(call, 20, 10)
        figure = Figure(f"requests/s through the gateway, {count} worker(s)"
                        + (f" ({', '.join(notes)})" if notes else ""), "req/s")
        for _ in range(runs):
            figure.samples.append(requests / timed(lambda: _latencies(call, requests, 10)))
        figures[count] = figure
    lab.deploy([host])
    return figures[default_count], list(figures.values())


def on_off_cost(lab: Lab, requests: int, runs: int, setting: str, what: str) -> list[Figure]:
    """p50 at 1 client and requests/s at 10 with a boolean setting on (the default) and off, side by
    side: the context-window check counts every prompt's tokens before any backend is called, the
    metrics callback counts every request for Prometheus."""
    host = lab.gateways[0]
    key = control.master_key()
    prompt = " ".join(["the gateway reads every word of this prompt"] * 60)  # ~480 words, well within 2048
    call = lambda: _post(f"http://{host.address}:{GATEWAY_PORT}/v1/chat/completions",  # noqa: E731
                         {"model": "mistral-7b", "messages": [{"role": "user", "content": prompt}],
                          "max_tokens": 16}, key)
    figures: dict[str, list[Figure]] = {}
    # Off first: "on" is the default, so the gateway ends as the other measurements expect it
    # without a third deploy (each is a switch-over).
    for state, on in (("off", False), ("on", True)):
        lab.deploy([host], **{setting: on})
        _latencies(call, 20, 10)  # warm up
        p50 = Figure(f"p50 through the gateway, {what} {state}, 1 client(s)", "ms")
        rate = Figure(f"requests/s through the gateway, {what} {state}, 10 client(s)", "req/s")
        for _ in range(runs):
            p50.samples.append(percentile(_latencies(call, requests, 1), 50))
            rate.samples.append(requests / timed(lambda: _latencies(call, requests, 10)))
        figures[state] = [p50, rate]
    assert DEFAULTS[setting] is True, f"{setting}: the gateway is left on its default"
    return figures["on"] + figures["off"]


class MemorySampler(threading.Thread):
    """Resident memory of the gateway's processes (instances, their workers, the front) on a host, every half second."""

    COMMAND = "ps -eo rss=,args= | awk '/litellm|haproxy/ && !/awk/ {s += $1} END {print s + 0}'"

    def __init__(self, host: LabHost) -> None:
        super().__init__(daemon=True)
        self.host, self.samples, self.stop = host, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            out = machines.ssh(self.host, self.COMMAND, check=False).stdout.strip()
            if out.isdigit():
                self.samples.append(int(out) / 1024)
            self.stop.wait(0.5)


@contextmanager
def under_load(host: LabHost, clients: int, pause: float = 0.0):
    """Steady completions through the gateway (the official client, its retries off) around the block;
    yields the outcomes, counted when the block ends."""
    with SteadyLoad(f"http://{host.address}:{GATEWAY_PORT}/v1", control.master_key(), "llama3-8b", clients,
                    pause=pause) as load:
        time.sleep(2)
        yield load.outcomes
        time.sleep(2)


def _serving(host: LabHost) -> str:
    """The serving instance's unit, by the host's own rule (on_host/serving.py)."""
    return machines.ssh(host, serving_command(tuple(DEFAULTS["litellm_instance_ports"]))).stdout.strip()


# The plain restart's load clients retry each failure at once, so their source address soon passes
# the front's per-source request rate and gets 429s until the failures stop: the question "does it
# serve again?" is asked from an address of its own, as another client would.
POLLER_SOURCE = "127.0.20.250"


def _answers_again(host: LabHost, timeout: float = 300) -> None:
    """Until a completion through the front succeeds."""
    body = json.dumps({"model": "llama3-8b", "messages": [{"role": "user", "content": "hi"}]}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {control.master_key()}"}

    def failure() -> str | None:
        """None once it answers; what went wrong until then."""
        conn = http.client.HTTPConnection(host.address, GATEWAY_PORT, timeout=60, source_address=(POLLER_SOURCE, 0))
        try:
            conn.request("POST", "/v1/chat/completions", body, headers)
            answer = conn.getresponse()
            answer.read()
            return None if answer.status == 200 else f"HTTP {answer.status}"
        except OSError as error:
            return str(error)
        finally:
            conn.close()

    served, last = wait_until(failure, timeout, 0.2, good=lambda failed: failed is None)
    if not served:
        raise TimeoutError(f"{host.name} did not serve again within {timeout:.0f} s: {last}")


def zero_downtime(lab: Lab, runs: int, clients: int, releases: bool = True, pause: float = 0.0) -> list[Figure]:
    """Failed requests under steady load during each kind of change, how long each takes, and the
    gateway host's memory, with a plain restart of the serving instance side by side (what every
    change cost before the front). releases=False leaves out the release changes (minutes: an
    install beside; the smoke run's, tests/lab/test_zero_downtime.py makes them under load)."""
    host = lab.gateways[0]
    other = release_dir(load(fleet_data(litellm_version=OTHER_RELEASE)))
    f = {key: Figure(name, unit) for key, name, unit in (
        ("config", "failed requests: deploy that changes a setting", "requests"),
        ("restart", "failed requests: fab restart", "requests"),
        ("release", "failed requests: release change (installed beside, switched to)", "requests"),
        ("broken", "failed requests: release that does not start (traffic stays)", "requests"),
        ("plain", "failed requests: plain systemctl restart (for comparison)", "requests"),
        ("t_config", "deploy that changes a setting, until the new config serves", "s"),
        ("t_plain", "plain restart, until it serves again (for comparison)", "s"),
        ("t_release", "release change: install beside + switch-over", "s"),
        ("mem_steady", "gateway host memory, steady", "MiB"),
        ("mem_switch", "gateway host memory, peak during a switch-over", "MiB"),
    )}
    lab.deploy([host])
    for run in range(runs):
        sampler = MemorySampler(host)
        sampler.start()
        time.sleep(2)
        steady = len(sampler.samples)
        with under_load(host, clients, pause) as outcomes:
            f["t_config"].samples.append(lab.deploy([host], litellm_timeout=31 + run % 2))
        sampler.stop.set()
        sampler.join()
        f["config"].samples.append(len(outcomes.failures))
        f["mem_steady"].samples.append(max(sampler.samples[:max(steady, 1)]))
        f["mem_switch"].samples.append(max(sampler.samples))
        with under_load(host, clients, pause) as outcomes:
            lab.fab([host], "restart")
        f["restart"].samples.append(len(outcomes.failures))
        with under_load(host, clients, pause) as outcomes:
            f["t_plain"].samples.append(timed(lambda: (machines.ssh(host, f"systemctl restart {_serving(host)}"),
                                                       _answers_again(host))))
        f["plain"].samples.append(len(outcomes.failures))
        if not releases:
            continue
        machines.ssh(host, f"rm -rf {other}")  # installed anew each run: the figure includes the install
        with under_load(host, clients, pause) as outcomes:
            f["t_release"].samples.append(lab.deploy([host], litellm_version=OTHER_RELEASE))
        f["release"].samples.append(len(outcomes.failures))
        lab.deploy([host])  # back to the inventory's release (a switch-over; the other stays for rollback)
        with release_does_not_start(other, lambda command: machines.ssh(host, command)), \
                under_load(host, clients, pause) as outcomes:
            try:
                lab.deploy([host], litellm_version=OTHER_RELEASE)
            except RuntimeError:
                pass  # refused, as it must be: the figure is what the clients saw
            else:
                raise RuntimeError("a release that does not start was switched to")
        f["broken"].samples.append(len(outcomes.failures))
    lab.deploy([host], litellm_timeout=DEFAULTS["litellm_timeout"])
    return [figure for figure in f.values() if figure.samples]


def fleet_first_deploy(lab: Lab, runs: int, fleet: int) -> list[Figure]:
    """First deploy of 1 and of `fleet` fresh gateways with the wheels sent from this machine's
    (warm) cache, against each host downloading from PyPI itself (litellm_pip_index_url)."""
    figures = []
    for source, overrides in (("wheels from this machine", {}),
                              ("each host from PyPI", {"litellm_pip_index_url": "https://pypi.org/simple"})):
        for n in (1, fleet):
            figure = Figure(f"first deploy, {n} fresh gateway(s), {source}", "s")
            for _ in range(runs):
                for host in lab.gateways[:n]:
                    control.ensure_extra_host(host, fresh=True)
                figure.samples.append(lab.deploy(lab.gateways[:n], **overrides))
            figures.append(figure)
    return figures


def write_report(path: Path, runs: int, requests: int, smoke: bool, figures: list[Figure],
                 comparisons: list[tuple[str, float, float | None]], stages: dict[str, float] | None = None) -> None:
    """The figures and comparisons as JSON, with the machine they came from and the seconds each
    stage of the run took."""
    import os
    import platform
    from datetime import datetime

    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "runs": runs, "requests": requests, "smoke": smoke,
        "figures": {f.name: f.summary() for f in figures},
        "comparisons": {name: {"value": value, "goal": goal} for name, value, goal in comparisons},
        "stages": {name: round(seconds, 1) for name, seconds in (stages or {}).items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfigures written to {path}")
