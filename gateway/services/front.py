"""The front: HAProxy from the distribution (litellm-front.service) owns the gateway port and sends
each request to the serving proxy instance; with litellm_tls it serves the gateway's certificate.
A change of its files is a reload: a new process takes the listening socket over, and the servers'
states (drained, stopped) are kept across it (on_host/front_state.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.services import proxy
from gateway.services.base import Change, ManagedFile, Retired, Rows, Service
from gateway.services.host import unit_command
from gateway.settings import Settings

UNIT = "litellm-front.service"
SERVICE = Service(UNIT, "owns the gateway port, in front of the proxy instances", Change.RELOAD,
                  started_by=proxy.SERVICE.unit)
CONFIG = "/etc/haproxy/litellm-front.cfg"  # /etc/litellm is not readable by the front's dynamic user
RUNTIME_DIRECTORY = "litellm-front"
ADMIN_SOCKET = f"/run/{RUNTIME_DIRECTORY}/admin.sock"
# servers' states, saved before a reload (on_host/front_state.py)
STATE_FILE = f"/run/{RUNTIME_DIRECTORY}/servers.state"
BACKEND = "instances"
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
        return proxy.server(port)

    @property
    def save_state(self) -> str:
        """The unit's reload step that keeps the servers' states (drained, stopped) across it."""
        return unit_command("front_state", ADMIN_SOCKET, STATE_FILE)

    @property
    def fleet_ca(self) -> str:
        return fleet_ca(self.s)


def fleet_ca(s: Settings) -> str:
    """What a front verifies the other gateways' fronts with: the CA the deploy installs (the own
    CA, or the operator's ca_file), else the system's CAs."""
    return FLEET_CA if s.tls and (s.tls.own_ca or s.tls.ca_file) else "@system-ca"


def rows(r: Rows) -> list[ManagedFile]:
    """HAProxy's config and unit, after what its check reads: the certificate and the CA the fleet's
    fronts verify each other with (the scrape token's digest is the metrics' own row)."""
    s, served = r.s, r.served
    reached = (UNIT, *r.certificate_readers)
    rows = []
    if served:
        until = f"valid until {served.not_after:%Y-%m-%d}"
        rows += [
            ManagedFile(TLS_PEM, "litellm_tls (certificate chain and key)", "root", "root", "600",
                        f"holds the front's certificate for {', '.join(served.names)} and its key, root only",
                        served.pem, validate=f"{PEM_VARIABLE}={{path}} /usr/sbin/haproxy -c -q -f {CONFIG}",
                        restarts=reached),
            r.system(TLS_CERT, "litellm_tls (certificate chain)", served.chain.decode(),
                     f"holds the front's certificate chain ({until}), which the host's own checks pin"),
        ]
    if s.fleet and served and fleet_ca(s) == FLEET_CA:
        rows.append(r.system(FLEET_CA, "litellm_tls (the CA clients are given)", Path(served.ca_file).read_text(),
                             "holds the CA the fronts verify each other's certificates with", restarts=reached))
    return [
        *rows,
        r.system(CONFIG, *r.template("litellm-front.cfg.j2"),
                 f"sends port {s.port} ({s.scheme}) to the serving proxy instance, checked by haproxy -c",
                 validate=f"{PEM_VARIABLE}={TLS_PEM} /usr/sbin/haproxy -c -q -f {{path}}", restarts=(UNIT,)),
        r.unit(SERVICE),
    ]


def retired(s: Settings) -> list[Retired]:
    if s.tls:
        return []
    return [Retired((TLS_PEM, TLS_CERT), "The certificate and key of the front are gone: litellm_tls is off",
                    (f"rm -f {TLS_PEM} {TLS_CERT}",))]


def context(s: Settings) -> dict[str, object]:
    return {"front": Front(s)}


def layout(s: Settings) -> dict[str, object]:
    return {"front_unit": UNIT, "admin_socket": ADMIN_SOCKET, "backend": BACKEND}
