"""The fleet's floating address: keepalived (VRRP) on every gateway of a fleet, its names declared once.

Each gateway runs litellm-fleet.service (the distribution's keepalived, VRRP only, a config of the
deploy's own); the one holding the address is the one whose front every client reaches. The
holder keeps it while its front's admin socket answers (on_host/fleet_check.py, run by keepalived),
and while its stopping front finishes its clients' requests (on_host/handover.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from gateway import front

UNIT = "litellm-fleet.service"
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
        return front.unit_command("fleet_check", front.ADMIN_SOCKET, HANDOVER_FILE)

    @property
    def handover(self) -> str:
        """The front's stop and start around the address (on_host/handover.py), as root."""
        return front.unit_command("handover")
