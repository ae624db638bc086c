"""The gateway's front and its two proxy instances: every name they share, declared once.

HAProxy from the distribution (litellm-front.service) owns the gateway port; behind it, two
LiteLLM instances (litellm@PORT.service on loopback) take turns. The deploy, `fab restart` and
`fab rollback` switch traffic with on_host/switch.py, `fab status` reads the front with
on_host/status.py: both get this layout as one JSON argument, so the host side names nothing itself.
"""
from __future__ import annotations

from dataclasses import dataclass

from gateway.settings import Settings

HOST_LIB = "/usr/local/lib/litellm-gateway"  # on_host/ is installed below it (gateway/files.py)

UNIT = "litellm-front.service"
CONFIG = "/etc/haproxy/litellm-front.cfg"  # /etc/litellm is not readable by the front's dynamic user
RUNTIME_DIRECTORY = "litellm-front"
ADMIN_SOCKET = f"/run/{RUNTIME_DIRECTORY}/admin.sock"
# servers' states, saved before a reload (on_host/front_state.py)
STATE_FILE = f"/run/{RUNTIME_DIRECTORY}/servers.state"
BACKEND = "instances"
INSTANCE_TEMPLATE = "litellm@.service"
# TLS (litellm_tls): the chain and key, root's alone on disk; a copy the front's dynamic user owns is
# made at each start and reload (systemd's credentials are not refreshed on reload); the chain
# alone, public, which the host's own checks pin.
TLS_PEM = "/etc/haproxy/litellm-front.pem"
TLS_CERT = "/etc/haproxy/litellm-front.crt"
SERVED_PEM = f"/run/{RUNTIME_DIRECTORY}/tls.pem"
PEM_VARIABLE = "LITELLM_FRONT_PEM"  # the config's crt: SERVED_PEM (presetenv), or TLS_PEM while the deploy checks it
# A fleet (litellm_fleet_address): the CA the fronts verify each other's certificates with, when
# the gateways serve TLS (the operator's ca_file or the own CA; without one, the system's CAs).
FLEET_CA = "/etc/haproxy/litellm-fleet-ca.crt"
FLEET_BACKEND = "gateways"  # every gateway's front, in each front: where the fleet's address sends requests
READINESS_PATH = "/health/readiness"  # on_host/readiness.py asks the same (tests/test_render.py holds them equal)
# The paths a client may send through the front, exactly as spelled: the OpenAI API's model routes
# and the two health checks. Any other path, or another spelling of one of these (percent-encoded,
# doubled slashes, dot segments, other case), gets 404 from the front before an instance reads it.
# The master key needs no other route: team keys live in a file (gateway/team_keys.py), not in LiteLLM.
CLIENT_ROUTES = (
    "/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions",
    "/v1/embeddings", "/embeddings", "/v1/models", "/models",
    "/health/liveliness", READINESS_PATH,
)
# The unit every gateway ran before the front existed: stopped and removed when the front takes its port.
LEGACY_UNIT = "litellm.service"


def unit_command(module: str, *arguments: str) -> str:
    """on_host.MODULE as a unit's Exec line or keepalived's script: no shell, so env sets the path.
    (`gateway.commands.on_host` is the same for a shell, over SSH.)"""
    return " ".join([f"/usr/bin/env PYTHONPATH={HOST_LIB} /usr/bin/python3 -m on_host.{module}", *arguments])


def instance_unit(port: int) -> str:
    return INSTANCE_TEMPLATE.replace("@", f"@{port}")



def instance_host(s: Settings) -> str:
    """The instances' address as a URL names it."""
    return f"[{s.instance_address}]" if ":" in s.instance_address else s.instance_address


def server(port: int) -> str:
    """The instance's name in the front's backend."""
    return f"i{port}"


@dataclass(frozen=True)
class Front:
    """What the front's templates read, for one host's settings."""

    s: Settings
    config: str = CONFIG
    admin_socket: str = ADMIN_SOCKET
    runtime_directory: str = RUNTIME_DIRECTORY
    readiness_path: str = READINESS_PATH
    served_pem: str = SERVED_PEM
    pem_variable: str = PEM_VARIABLE
    fleet_backend: str = FLEET_BACKEND
    state_file: str = STATE_FILE
    client_routes: tuple[str, ...] = CLIENT_ROUTES
    host_lib: str = HOST_LIB

    # Connection slots of the global maxconn (4096): each client frontend may take this many, so a
    # flood on one leaves the other and the metrics port theirs.
    client_maxconn: int = 2000
    metrics_maxconn: int = 50
    buffered_body: str = "16k"  # HAProxy's buffer (tune.bufsize): the body's start it waits for
    body_wait: int = 10  # seconds; the head has as long (timeout http-request)

    @property
    def max_body_bytes(self) -> int:
        return self.s.max_body_mib * 1024 * 1024

    @property
    def instance_maxconn(self) -> int:
        """Requests one instance is given at a time: 128 per worker (the rest queue in the front)."""
        return 128 * int(self.s.workers)

    @property
    def fleet_peers(self) -> tuple[str, ...]:
        """The fleet's gateways' addresses (exempt from the per-client bounds between them)."""
        return tuple(address for _, address in self.s.fleet.members) if self.s.fleet else ()

    @property
    def request_timeout(self) -> int:
        """Seconds the front waits on either side: every try of the router, and some."""
        return self.s.timeout * (self.s.num_retries + 1) + 30

    @property
    def copy_pem(self) -> str:
        """The served copy of TLS_PEM, made as root for the front's user (a "+" Exec line of its unit)."""
        new = f"{SERVED_PEM}.new"
        return (f"/bin/sh -c 'install -m 0400 {TLS_PEM} {new} && chown --reference=/run/{RUNTIME_DIRECTORY} {new} "
                f"&& mv -f {new} {SERVED_PEM}'")

    @staticmethod
    def server(port: int) -> str:
        return server(port)

    @property
    def save_state(self) -> str:
        """The unit's reload step that keeps the servers' states (drained, stopped) across it."""
        return unit_command("front_state", ADMIN_SOCKET, STATE_FILE)

    @property
    def fleet_ca(self) -> str:
        """What a front verifies the other gateways' fronts with: the CA the deploy installs (the own
        CA, or the operator's ca_file), else the system's CAs."""
        tls = self.s.tls
        return FLEET_CA if tls and (tls.own_ca or tls.ca_file) else "@system-ca"

