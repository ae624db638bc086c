"""What the host-side scripts (on_host/status.py, switch.py, fleet_member.py) are told of a gateway's
layout: its front, its instances and their units, its releases and, in a fleet, the fleet's address and
rate-limit store; one JSON argument, read from the modules that declare each part."""
from __future__ import annotations

import json

from gateway import front, services, shared_limits, vrrp
from gateway.settings import Settings


def layout(s: Settings) -> str:
    """The host-side scripts' view of the front and instances, as one JSON argument."""
    return json.dumps({
        "front_unit": front.UNIT,
        "services": list(services.units(s)),  # each one's state in fab status
        "admin_socket": front.ADMIN_SOCKET,
        "backend": front.BACKEND,
        "instances": {str(port): {"unit": front.instance_unit(port), "server": front.server(port),
                                  "url": f"http://{front.instance_host(s)}:{port}",
                                  "slot": f"{s.slots_dir}/{port}"} for port in s.instance_ports},
        "releases_dir": s.releases_dir,
        "current_link": s.current_link,
        "legacy_unit": front.LEGACY_UNIT,
        "fleet": fleet_layout(s),
    }, sort_keys=True, separators=(",", ":"))


def fleet_layout(s: Settings) -> dict | None:
    """A fleet's part of the layout: its address, the fronts' backend of gateways, keepalived's unit."""
    if not s.fleet:
        return None
    return {"address": s.fleet.address, "backend": front.FLEET_BACKEND, "unit": vrrp.UNIT,
            "servers": [name for name, _ in s.fleet.members],
            # The fleet's rate-limit store, asked on this gateway's own address (password from the env file).
            "redis_port": s.fleet.redis_port, "sentinel_port": s.fleet.sentinel_port,
            "env_file": s.env_file, "password_variable": shared_limits.PASSWORD_VAR,
            "redis_ca": shared_limits.Limits(s).tls_ca}
