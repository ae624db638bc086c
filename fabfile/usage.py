"""`fab usage`: each team's traffic over a window, from the monitoring host's Prometheus."""
from __future__ import annotations

import json
import time

from invoke import task
from invoke.exceptions import Exit

from gateway.monitoring.prometheus import PrometheusError, watchers
from gateway.table import table
from gateway.usage import COUNTERS, GRAPH, NO_TEAM, seconds, usage


@task(name="usage", help={"since": "the window, up to now: 30m, 24h (default), 7d",
                          "json": "print JSON instead of a table"})
def usage_task(c, since="24h", json_=False):
    """Per team: requests, tokens in and out, errors and 429s (its limits) over --since, and a graph link each."""
    try:
        seconds(since)
    except ValueError as error:
        raise Exit(str(error), code=2) from None
    try:
        found = watchers(c.config.litellm.inventory)
    except SystemExit as refused:
        raise Exit(str(refused.code), code=2) from None
    if not found:
        raise Exit("the inventory has no monitoring host: add a monitoring_group() (see the README's Monitoring) "
                   "and deploy", code=2)
    watcher = found[0]
    try:
        teams = usage(watcher, since, time.time())
    except PrometheusError as error:
        raise Exit(f"Prometheus on {watcher.name} did not answer: {error}", code=1) from None
    report = {team: {**counts, "graph": watcher.graph_url(GRAPH.format(team=team), since)}
              for team, counts in teams.items()}
    if json_:
        print(json.dumps({"since": since, "prometheus": watcher.prometheus_url, "teams": report}, indent=2))
        return
    rows = [[team if team != NO_TEAM else "(master key)", *(f"{counts[k]:,}" for k in COUNTERS)]
            for team, counts in teams.items()]
    print(f"Usage over the last {since}, from {watcher.prometheus_url}")
    print(table(("TEAM", "REQUESTS", "TOKENS IN", "TOKENS OUT", "ERRORS", "429 (LIMITS)"), rows))
    print()
    for team, entry in report.items():
        print(f"{team}: {entry['graph']}")
