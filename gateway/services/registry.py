"""Every component of a gateway host, in the order the deploy installs their files, and what is
made of them all: the managed-files table, the services the host runs, what the templates read,
and the layout the host-side scripts are told.

The deploy (tasks/gateway.py) installs the table's rows in order, then brings each service up as
its `change` says (gateway/service_ops.py); `fab status` compares the hosts against the same table
for drift and reports each service's state (on_host/status.py, told by `layout`); `fab keys.push`
installs team-keys.json with the same staged install (gateway/services/base.py).
"""
from __future__ import annotations

import json
from types import ModuleType

from gateway import tls
from gateway.render import render
from gateway.services import fleet_address, front, host, kept_models, metrics, proxy, store
from gateway.services.base import ManagedFile, Retired, Rows, Service
from gateway.settings import Settings
from gateway.team_keys import KeyStore, host_file

# The rows' order: the host's own files, then the proxy's first of the services, since the release's
# LiteLLM may refuse its config or auth hook (the deploy stops there) and a refused change must
# leave every other service's files as they were; the scrape token's digest before the front's
# config, whose check reads it.
COMPONENTS: tuple[ModuleType, ...] = (host, proxy, store, metrics, front, fleet_address, kept_models)

# The order the deploy brings the services up in: the rate-limit store before the proxy that counts
# in it, the front's new config before the switch-over that sets its servers' states, the fleet's
# address after a front that answers, the kept models' loads last.
ORDER: tuple[Service, ...] = (*store.SERVICES, front.SERVICE, proxy.SERVICE, fleet_address.SERVICE, kept_models.SERVICE)


def on_host(s: Settings) -> tuple[Service, ...]:
    """The services a gateway with these settings runs, in ORDER."""
    return tuple(service for service in ORDER if service.runs_where(s))


def units(s: Settings) -> tuple[str, ...]:
    """The units whose state `fab status` reports (the proxy's instances are reported one by one)."""
    return tuple(service.unit for service in on_host(s) if service is not proxy.SERVICE)


def context(s: Settings, host_name: str) -> dict[str, object]:
    """What a gateway's templates read: the settings, the host's name and each component's part."""
    parts: dict[str, object] = {"s": s, "host_name": host_name}
    for component in COMPONENTS:
        parts.update(component.context(s))
    return parts


def rendered(template: str, s: Settings, host_name: str) -> str:
    """One of a gateway's templates, as the deploy installs it."""
    return render(template, **context(s, host_name))


def managed_files(s: Settings, host_name: str, team_keys: str | None = None, issue: bool = True) -> list[ManagedFile]:
    """The table for one host, in the order the deploy installs it; `s` resolved() for the host.
    team-keys.json holds the operator's keys file (`litellm_team_keys_file`) unless `team_keys`
    gives its rendered content (what `fab keys.push` is about to install). Read-only tasks pass
    `issue=False`: no TLS certificate or scrape token is made, and their rows are left out where
    none was made yet."""
    if s.workers == "auto":  # the unit holds the worker count
        raise ValueError("managed_files needs settings resolved() with the host's CPU count")
    if team_keys is None:
        team_keys = host_file(KeyStore(s.team_keys_file).read() if s.team_keys_file else {})
    r = Rows(s, host_name, team_keys, issue, tls.material(s, host_name, issue) if s.tls else None,
             context(s, host_name), store.certificate_readers(s))
    return [row for component in COMPONENTS for row in component.rows(r)]


def retired(s: Settings) -> list[Retired]:
    """What the deploy looks for and removes: the files of features turned off since an earlier deploy."""
    return [gone for component in COMPONENTS for gone in component.retired(s)]


def by_name(files: list[ManagedFile]) -> dict[str, ManagedFile]:
    return {f.name: f for f in files}


def layout(s: Settings) -> str:
    """What the host-side scripts (on_host/status.py, switch.py, fleet_member.py, primary.py) are
    told of a gateway: its front, instances and releases, the services whose state `fab status`
    reports and, in a fleet, the fleet's address and rate-limit store; one JSON argument."""
    return json.dumps({
        **front.layout(s),
        **proxy.layout(s),
        "services": list(units(s)),
        "fleet": {**fleet_address.fleet_layout(s), **store.fleet_layout(s)} if s.fleet else None,
    }, sort_keys=True, separators=(",", ":"))
