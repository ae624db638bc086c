"""The benchmark keeps working: a smoke run (one repetition, few requests, 2 gateways) in the lab,
on its own hosts (gw3, gw4, built fresh), in the process beside the gw2 tests'.

Its figures mean little from one repetition on a shared CI machine, so only their presence and
shape are checked here; the goals are read from a real run (`python -m bench`, README).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.lab.conftest import REPO

pytestmark = pytest.mark.lab


def test_a_smoke_run_prints_every_figure_and_comparison_and_writes_them_as_json(lab_up, tmp_path):
    """On the benchmark's own hosts (gw3, gw4, built fresh), beside the gw2 tests' process."""
    report_file = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--fleet", "2", "--json", str(report_file)],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert report["smoke"] is True and report["machine"]["cpus"] >= 1
    figures = report["figures"]
    assert set(report["stages"]) >= {"first deploy", "cost per request", "time to first token",
                                      "changes under load"}, report["stages"]
    print("stages (s):", report["stages"])  # where the smoke run's minutes went (pytest -rP shows it)
    for name in ("first deploy to a fresh host", "floor: pip install + start to readiness", "re-run, nothing changed",
                 "floor: pyinfra connect + one no-op operation", "re-run, nothing changed, 2 gateway(s)",
                 "fab status, 2 gateways", "DNS preflight, 10 names, dead nameserver",
                 "p50 through the gateway, 10 client(s)", "p95 the instance directly, 1 client(s)",
                 "requests/s direct to Ollama double, 10 client(s)", "requests/s through the gateway, 10 client(s)",
                 "CPU per request of the instance, the instance directly",
                 "CPU per request of the instance, through the gateway",
                 "memory of the instance (PSS of its processes), after the run",
                 "time to first token p50 through the gateway, 1 client(s)",
                 "time to first token p95 direct to Ollama double, 1 client(s)",
                 "requests/s through the gateway, 1 worker(s) (seed)",
                 "p50 through the gateway, context check on, 1 client(s)",
                 "requests/s through the gateway, context check off, 10 client(s)",
                 "deploy that changes a setting, until the new config serves",
                 "plain restart, until it serves again (for comparison)",
                 "gateway host memory, steady", "gateway host memory, peak during a switch-over"):
        assert name in figures, sorted(figures)
        assert figures[name]["n"] == 1 and figures[name]["median"] > 0
        assert name in result.stdout  # the table a person reads
    for name in ("deploy that changes a setting", "fab restart", "plain systemctl restart (for comparison)"):
        assert figures[f"failed requests: {name}"]["n"] == 1
    # The release changes take minutes (an install beside): a real run makes them, the smoke run
    # leaves them to tests/lab/test_zero_downtime.py.
    assert not any("release" in name for name in figures), sorted(figures)
    # The metrics callback's on/off is the context check's measurement of another setting: a real run only.
    assert not any("metrics callback" in name for name in figures), sorted(figures)
    # Counted, not timed: no request may fail through any change (the plain restart is the "before").
    failed = {name: c["value"] for name, c in report["comparisons"].items() if name.startswith("failed requests")}
    assert len(failed) == 2 and set(failed.values()) == {0}, failed
    assert figures["failed requests: plain systemctl restart (for comparison)"]["median"] > 0
    assert "time to first token added, p50, 1 client (ms)" in report["comparisons"]
    assert 100 < report["comparisons"]["memory of the instance (MiB)"]["value"] < 4096
    assert len(report["comparisons"]) == 17  # a real run adds the metrics callback's, the fleet's first deploys
    # Where a worker's main thread spends its time, beside the figures: py-spy's top frames.
    profile = report_file.with_suffix(".profile.txt").read_text()
    assert "top 15 frames by inclusive time" in profile and profile in result.stdout, profile
    inclusive, own = profile.split("top 15 frames by own time", 1)
    for part in (inclusive, own):
        assert len([line for line in part.splitlines() if " %  " in line and line.strip().endswith(")")]) == 15, part
    # The deploy's default is measured as the count it resolves to on the host, marked in the table.
    assert sum("default: auto)" in name for name in figures) == 1
    for name, comparison in report["comparisons"].items():
        # a difference may fall either side of 0; a count of failures is 0
        assert comparison["value"] > 0 or "on - off" in name or name.startswith("failed requests"), name
        assert name in result.stdout
    # The dead nameserver is bounded by one lookup timeout for the whole fleet, however noisy the machine.
    assert figures["DNS preflight, 10 names, dead nameserver"]["median"] < 2 * figures["one lookup timeout"]["median"]


def test_the_residency_benchmark_runs_as_the_performance_page_shows_it(lab_up, tmp_path):
    """`python -m bench.residency --requests N` on gw3 and its backends: a figure per strategy, the
    comparison printed, and the backends' own behaviour put back after."""
    from lab.topology import BENCH_GATEWAYS, backends_of

    behaviours = {b.name: (b.root / "etc/ollama-double.json").read_text() for b in backends_of(BENCH_GATEWAYS[:1])}
    report_file = tmp_path / "residency.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.residency", "--requests", "24", "--strategies", "least-busy", "residency",
         "--json", str(report_file)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert set(report["results"]) == {"least-busy", "residency"}
    for figures in report["results"].values():
        assert figures["loads"] >= 1 and figures["p50_s"] > 0 and figures["completions_per_s"] > 0
        assert sum(figures["loads_by_model"].values()) == figures["loads"]
    assert "residency against least-busy: loads" in result.stdout
    assert {b.name: (b.root / "etc/ollama-double.json").read_text()
            for b in backends_of(BENCH_GATEWAYS[:1])} == behaviours
