"""`fab health`: every model on every backend, present and loaded, without sending a completion."""
from __future__ import annotations

from fabric import task
from invoke.exceptions import Exit

from fabfile.common import fleet_of
from gateway.preflight.backends import get_json
from gateway.table import table


@task
def health(c):
    """Per model and backend, without completions: which backends have each model, and which have it loaded."""
    fleet = fleet_of(c)
    resolve = fleet.resolver()
    timeout = fleet.gateways[0].settings.preflight_timeout
    by_name = {m.name: m for m in fleet.models}
    rows, healthy = [], True
    for backend in fleet.backends:
        try:
            address = resolve(backend.address)
            have = {m["name"] for m in get_json(address, backend, "/api/tags", timeout).get("models", [])}
            loaded = {m["name"]: m.get("expires_at", "") for m in get_json(address, backend, "/api/ps", timeout).get("models", [])}
        except Exception as error:  # noqa: BLE001
            healthy = False
            rows += [[name, backend.name, by_name[name].tag, "UNREACHABLE", "-", str(error)] for name in backend.models]
            continue
        for name in backend.models:
            tag = by_name[name].tag if ":" in by_name[name].tag else f"{by_name[name].tag}:latest"
            present = tag in have
            healthy &= present
            rows.append([name, backend.name, tag, "yes" if present else "MISSING",
                         "yes" if tag in loaded else "no",
                         f"loaded until {loaded[tag]}" if tag in loaded else ("" if present else f"fix: ollama pull {tag}")])
    rows.sort()
    print(table(("MODEL", "BACKEND", "TAG", "PRESENT", "LOADED", "DETAIL"), rows))
    if not healthy:
        raise Exit("a model is missing or a backend is unreachable", code=1)
