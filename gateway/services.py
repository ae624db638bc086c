"""The gateway host's services, each declared once: its unit, what it does, and what a changed file
of its does to it.

The deploy (tasks/gateway.py) brings them up in ORDER, each as its `change` says
(gateway/service_ops.py); the managed-files table (gateway/files.py) holds each one's rows (the
proxy's first: its config may be refused) and names in each row the services a change reaches; `fab status` reports the
state of each one the host runs (on_host/status.py, told by gateway/host_layout.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, unique

from gateway import front, shared_limits, vrrp
from gateway.settings import Settings


@unique
class Change(Enum):
    """What a changed file of a service (or its unit) does to it."""

    RESTART = "restart"  # stopped and started on the new files
    RELOAD = "reload"  # a new process takes the listening socket over: no connection refused
    SWITCH_OVER = "switch-over"  # the idle instance starts on them, takes the traffic once it answers
    RELOAD_CONFIG = "reload-config"  # a changed config is reloaded; a changed unit restarts it


@dataclass(frozen=True)
class Service:
    unit: str
    does: str  # what it is for, in the deploy's operation names
    change: Change
    fleet_only: bool = False  # runs on a fleet's gateways only
    # Its start is this service's step (it may have to take the port from another unit first): the
    # deploy checks it is enabled and running after that step.
    started_by: str | None = None


REDIS = Service(shared_limits.REDIS_UNIT, "keeps the rate-limit counters", Change.RESTART)
SENTINEL = Service(shared_limits.SENTINEL_UNIT, "names the fleet's Redis primary", Change.RESTART, fleet_only=True)
PROXY = Service(front.INSTANCE_TEMPLATE, "the proxy instances (LiteLLM)", Change.SWITCH_OVER)
FRONT = Service(front.UNIT, "owns the gateway port, in front of the proxy instances", Change.RELOAD,
                started_by=PROXY.unit)
FLEET = Service(vrrp.UNIT, "holds the fleet's address on one ready gateway", Change.RELOAD_CONFIG, fleet_only=True)

# The order the deploy brings them up in: the rate-limit store before the proxy that counts in it,
# the front's new config before the switch-over that sets its servers' states, the fleet's address
# after a front that answers.
ORDER = (REDIS, SENTINEL, FRONT, PROXY, FLEET)


def on_host(s: Settings) -> tuple[Service, ...]:
    """The services a gateway with these settings runs, in ORDER."""
    return tuple(service for service in ORDER if s.fleet or not service.fleet_only)


def units(s: Settings) -> tuple[str, ...]:
    """The units whose state `fab status` reports (the proxy's instances are reported one by one)."""
    return tuple(service.unit for service in on_host(s) if service is not PROXY)
