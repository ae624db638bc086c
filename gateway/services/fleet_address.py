"""The fleet's floating address: keepalived (VRRP) on every gateway of a fleet, its names declared once.

Each gateway runs litellm-fleet.service (the distribution's keepalived, VRRP only, a config of the
deploy's own); the one holding the address is the one whose front every client reaches. The
holder keeps it while its front's admin socket answers (on_host/fleet_check.py, run by keepalived),
and while its stopping front finishes its clients' requests (on_host/handover.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from gateway.services import front
from gateway.services.base import UNIT_DIR, Change, ManagedFile, Retired, Rows, Service, in_a_fleet
from gateway.services.host import unit_command
from gateway.settings import Settings

UNIT = "litellm-fleet.service"
SERVICE = Service(UNIT, "holds the fleet's address on one ready gateway", Change.RELOAD_CONFIG, runs_where=in_a_fleet)
CONFIG = "/etc/keepalived/litellm-fleet.conf"  # not keepalived.conf: Debian's own unit stays idle
RUNTIME_DIRECTORY = "litellm-fleet"
# Written by a stopping front that holds the address (on_host/handover.py): keep it until its
# clients' requests are done. In keepalived's runtime directory: root's alone.
HANDOVER_FILE = f"/run/{RUNTIME_DIRECTORY}/handover"
# Set in the stopping front (its admin socket) by on_host/handover.py: every answer of the fleet's
# frontend then closes its connection (litellm-front.cfg.j2).
HANDOVER_VARIABLE = "proc.handover"
DISTRIBUTION_UNIT = "keepalived.service"  # masked: the fleet's keepalived is litellm-fleet.service


@dataclass(frozen=True)
class Vrrp:
    """What the fleet's templates read."""

    unit: str = UNIT
    config: str = CONFIG
    runtime_directory: str = RUNTIME_DIRECTORY
    front_unit: str = front.UNIT
    handover_file: str = HANDOVER_FILE
    handover_variable: str = HANDOVER_VARIABLE

    @property
    def check(self) -> str:
        """keepalived's track script: no shell, so the module path goes through env."""
        return unit_command("fleet_check", front.ADMIN_SOCKET, HANDOVER_FILE)

    @property
    def handover(self) -> str:
        """The front's stop and start around the address (on_host/handover.py), as root."""
        return unit_command("handover")


def rows(r: Rows) -> list[ManagedFile]:
    """keepalived's config (reloaded) and unit."""
    s = r.s
    if not s.fleet:
        return []
    return [
        r.system(CONFIG, *r.template("litellm-fleet.conf.j2"),
                 f"holds {s.fleet.address} on one gateway at a time while its front answers (VRRP, priority "
                 f"{s.fleet.priority(r.host_name)})", validate="/usr/sbin/keepalived --config-test -f {path}",
                 restarts=(UNIT,)),
        r.unit(SERVICE),
    ]


def retired(s: Settings) -> list[Retired]:
    if s.fleet:
        return []
    return [Retired((CONFIG, front.FLEET_CA),
                    "The fleet's address is not served from here: litellm_fleet_address is None",
                    (f"systemctl disable --now {UNIT} 2>/dev/null || true",
                     f"rm -f {CONFIG} {front.FLEET_CA} {UNIT_DIR}/{UNIT}", "systemctl daemon-reload"))]


def context(s: Settings) -> dict[str, object]:
    return {"vrrp": Vrrp()}


def fleet_layout(s: Settings) -> dict[str, object]:
    """The fleet's address, the fronts' backend of gateways, keepalived's unit."""
    return {"address": s.fleet.address, "backend": front.FLEET_BACKEND, "unit": UNIT,
            "servers": [name for name, _ in s.fleet.members]}
