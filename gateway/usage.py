"""Usage per team over a window, from the gateways' LiteLLM counters in Prometheus.

Counted exactly from the samples (at most ~1,500 per series), not with increase(): a counter LiteLLM
creates at a team's first request is first scraped at its value then, which increase() never counts,
and increase() extrapolates to the window's edges. Here a series born inside the window counts from
0, a drop is a restart (switch-over, `fab restart`) counting from 0 again, and every slot, worker
and gateway of a team adds up.
"""
from __future__ import annotations

import re
from collections import defaultdict

from gateway.monitoring.prometheus import Watcher

# Column -> the counter it sums (LiteLLM's metric names; 429 is a team's own limit refusing it).
COUNTERS = {
    "requests": "litellm_proxy_total_requests_metric_total",
    "tokens_in": "litellm_input_tokens_metric_total",
    "tokens_out": "litellm_output_tokens_metric_total",
    "errors": 'litellm_proxy_failed_requests_metric_total{exception_status!="429"}',
    "limited_429": 'litellm_proxy_failed_requests_metric_total{exception_status="429"}',
}
GRAPH = 'sum by (team) (rate(litellm_proxy_total_requests_metric_total{{team="{team}"}}[5m]))'
DURATION = re.compile(r"([1-9][0-9]{0,5})([smhdw])")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
NO_TEAM = "None"  # LiteLLM's label for requests made with the master key


def seconds(window: str) -> int:
    """'24h' -> 86400; ValueError naming the form otherwise."""
    match = DURATION.fullmatch(window or "")
    if not match:
        raise ValueError(f"--since {window!r} is not a duration like 30m, 24h or 7d (s, m, h, d or w)")
    return int(match.group(1)) * SECONDS[match.group(2)]


def counted(values: list[tuple[float, str]], start: float, step: float) -> float:
    """What a counter's samples add up to since `start`."""
    total, previous = 0.0, None
    for at, raw in values:
        value = float(raw)
        if previous is None:
            total += value if at > start + 1.5 * step else 0.0  # born inside the window: from 0
        else:
            total += value if value < previous else value - previous
        previous = value
    return total


def _key(metric: dict[str, str]) -> frozenset:
    return frozenset((k, v) for k, v in metric.items() if k != "__name__")


def usage(watcher: Watcher, window: str, now: float) -> dict[str, dict[str, int]]:
    """team -> {column: count} over the last `window`, teams sorted by name."""
    span = seconds(window)
    step = max(15, span // 1440)
    teams: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0.0))
    for column, counter in COUNTERS.items():
        # The samples every `step` (aligned to its multiples), and each series' value now: a counter
        # born since the last aligned point has none of the former.
        series = {_key(s["metric"]): s["values"] for s in watcher.query(f"{counter}[{span}s:{step}s]", at=now)}
        for latest in watcher.query(counter, at=now):
            series.setdefault(_key(latest["metric"]), []).append(latest["value"])
        for labels, values in series.items():
            teams[dict(labels).get("team", NO_TEAM)][column] += counted(values, now - span, step)
    return {team: {k: int(round(v)) for k, v in teams[team].items()} for team in sorted(teams)}
