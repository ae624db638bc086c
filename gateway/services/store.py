"""Where a gateway keeps its rate-limit counters: its own Redis, or in a fleet the fleet's Redis.

One gateway: Redis on a Unix socket, the workers of that host only. A fleet: every gateway runs
Redis on its own address (the first in the inventory starts as the primary, the others replicate
it) and Redis Sentinel, which promotes a replica when the primary is lost; LiteLLM asks the
sentinels for the primary (coordination_redis with sentinel_nodes), so a team's limits hold for
the fleet together. Redis and Sentinel take a password derived from the master key (HMAC): the
key itself never crosses the network, and no second secret needs keeping. It reaches the hosts
in the root-only environment file; each unit writes it into a runtime file of its own at start.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from dataclasses import dataclass

from gateway.services import front
from gateway.services.base import UNIT_DIR, Change, ManagedFile, Retired, Rows, Service, in_a_fleet
from gateway.services.host import unit_command
from gateway.settings import Settings

REDIS_UNIT = "litellm-redis.service"
SENTINEL_UNIT = "litellm-sentinel.service"
REDIS = Service(REDIS_UNIT, "keeps the rate-limit counters", Change.RESTART)
SENTINEL = Service(SENTINEL_UNIT, "names the fleet's Redis primary", Change.RESTART, runs_where=in_a_fleet)
SERVICES = (REDIS, SENTINEL)
SERVICE_NAME = "litellm-fleet"  # the primary's name the sentinels monitor
PASSWORD_VAR = "LITELLM_REDIS_PASSWORD"  # in litellm.env (root only), beside the master key
# While the master key is rotated (litellm_previous_master_key): the old key's password, still let
# in by Redis and Sentinel, so that instances not yet switched over keep counting in the store.
PREVIOUS_PASSWORD_VAR = "LITELLM_REDIS_PREVIOUS_PASSWORD"
REDIS_AUTH = "/run/litellm-redis/auth.conf"  # written at each start by the unit (on_host/shared_limits.py)
SENTINEL_DIR = "/var/lib/litellm-sentinel"  # StateDirectory=: Sentinel rewrites its own file there
SENTINEL_CONF = f"{SENTINEL_DIR}/sentinel.conf"
# The nftables table that lets only the fleet's gateways reach Redis and Sentinel (loaded by both units).
STORE_TABLE = "litellm_fleet_store"
STORE_RULES = "fleet-store.nft"  # in the config directory
# With TLS (a fleet's default), Redis and Sentinel serve the front's certificate, each from a copy of
# its own made at start (the front's file is root's), and verify each other with the fleet's CA.
REDIS_TLS_PEM = "/run/litellm-redis/tls.pem"
SENTINEL_TLS_PEM = f"{SENTINEL_DIR}/tls.pem"
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # a certificate from a public CA, without ca_file


def password(s: Settings) -> str:
    """The fleet's Redis password: the same on every gateway of the fleet, never the key itself."""
    assert s.master_key, "a fleet has one master key (checked by the settings)"
    return derived(s.master_key)


def derived(key: str) -> str:
    return hmac.new(key.encode(), b"litellm-fleet-redis", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Limits:
    """What the Redis and Sentinel templates read."""

    s: Settings
    password_var: str = PASSWORD_VAR
    previous_password_var: str = PREVIOUS_PASSWORD_VAR
    service_name: str = SERVICE_NAME
    redis_auth: str = REDIS_AUTH
    sentinel_conf: str = SENTINEL_CONF
    sentinel_dir: str = SENTINEL_DIR
    store_table: str = STORE_TABLE
    redis_tls_pem: str = REDIS_TLS_PEM
    sentinel_tls_pem: str = SENTINEL_TLS_PEM

    @property
    def tls_ca(self) -> str | None:
        """What Redis, Sentinel and LiteLLM verify each other's certificates with (None: no TLS)."""
        if not self.s.tls:
            return None
        ca = front.fleet_ca(self.s)
        return SYSTEM_CA_BUNDLE if ca.startswith("@") else ca

    @property
    def password(self) -> str:
        return password(self.s)

    @property
    def previous_password(self) -> str | None:
        """The password of the key a rotation replaces: accepted beside the new one, used by no one."""
        return derived(self.s.previous_master_key) if self.s.previous_master_key else None

    @property
    def password_tag(self) -> str:
        """A short fingerprint of the passwords for the files that read them at start: a new one (a
        rotation begun or ended) changes them, and so restarts exactly the services that must take it."""
        both = self.password + (f"\0{self.previous_password}" if self.previous_password else "")
        return hashlib.sha256(both.encode()).hexdigest()[:12]

    @property
    def sentinel_nodes(self) -> str:
        """coordination_redis.sentinel_nodes: every gateway's sentinel, as YAML (JSON) reads it, this
        gateway's own first. LiteLLM's Redis client asks them in turn for the primary, and a sentinel
        on a host killed outright costs it ~15 s (ten retries of a connect that times out); its own
        sentinel runs whenever this gateway serves, so a lost host's sentinel is never asked first."""
        assert self.s.fleet
        addresses = sorted((address for _, address in self.s.fleet.members), key=lambda a: a != self.s.bind_address)
        return json.dumps([[address, self.s.fleet.sentinel_port] for address in addresses])

    def member_addresses(self, version: int) -> list[str]:
        """The fleet's gateways' addresses of one IP version: the only sources Redis and Sentinel answer."""
        assert self.s.fleet
        return [a for _, a in self.s.fleet.members if ipaddress.ip_address(a).version == version]

    @property
    def store_rules(self) -> str:
        return f"{self.s.config_dir}/{STORE_RULES}"

    @property
    def load_store_rules(self) -> str:
        """Both units' ExecStartPre (as root): the table replaced whole, before the port opens."""
        return f"/usr/sbin/nft -f {self.store_rules}"

    @property
    def env_file(self) -> str:
        return self.s.env_file

    @property
    def sentinel_seed(self) -> str:
        """The deploy's part of Sentinel's file: copied into SENTINEL_CONF whenever it changed."""
        return f"{self.s.config_dir}/sentinel.conf"

    def write_auth(self, kind: str) -> str:
        """The unit's ExecStartPre (as root): the password from the env file into its runtime file, and
        with TLS the front's certificate and key into the service's own copy."""
        target = self.redis_auth if kind == "redis" else self.sentinel_conf
        seed = ["--seed", self.sentinel_seed] if kind == "sentinel" else []
        if self.tls_ca:
            seed += ["--tls-pem", front.TLS_PEM,
                     "--tls-out", self.redis_tls_pem if kind == "redis" else self.sentinel_tls_pem]
        return unit_command("shared_limits", kind, "--env-file", self.env_file, "--variable", PASSWORD_VAR,
                            "--previous-variable", PREVIOUS_PASSWORD_VAR,
                                  "--out", target, *seed, "--owner", f"{self.s.user}:{self.s.group}")


def certificate_readers(s: Settings) -> tuple[str, ...]:
    """A fleet's Redis and Sentinel serve the front's certificate, verified by the same CA: a new
    certificate restarts them too."""
    return (REDIS_UNIT, SENTINEL_UNIT) if s.fleet and s.tls else ()


def rows(r: Rows) -> list[ManagedFile]:
    """Redis, the rate-limit counters; in a fleet, Sentinel, which names the Redis primary, and the
    firewall of the store's ports."""
    s = r.s
    redis = [
        r.readable("redis.conf", *r.template("redis.conf.j2"),
                   f"keeps the rate-limit counters in memory, reachable at {s.redis_socket} only" if not s.fleet else
                   f"keeps the fleet's rate-limit counters, on port {s.fleet.redis_port} for the gateways only",
                   restarts=(REDIS_UNIT,)),
        r.unit(REDIS),
    ]
    if not s.fleet:
        return redis
    return [
        *redis,
        # Loaded by Sentinel's and Redis' units at start: a change is applied by restarting
        # Sentinel (Redis keeps its counters; the table is the same for both).
        r.system(Limits(s).store_rules, *r.template("litellm-fleet-store.nft.j2"),
                 f"lets only the fleet's gateways reach Redis ({s.fleet.redis_port}) and Sentinel "
                 f"({s.fleet.sentinel_port}), checked by nft -c", validate="/usr/sbin/nft -c -f {path}",
                 restarts=(SENTINEL_UNIT,)),
        r.readable("sentinel.conf", *r.template("sentinel.conf.j2"),
                   f"seeds Sentinel, which names the fleet's Redis primary (quorum {s.fleet.quorum} of "
                   f"{len(s.fleet.members)})", restarts=(SENTINEL_UNIT,)),
        r.unit(SENTINEL),
    ]


def retired(s: Settings) -> list[Retired]:
    """A gateway out of a fleet (or never in one): no Sentinel of the fleet's left running, voting on
    its primary, nor the firewall of its ports; its Redis serves the Unix socket alone (redis.conf)."""
    if s.fleet:
        return []
    unit, seed, rules = f"{UNIT_DIR}/{SENTINEL_UNIT}", Limits(s).sentinel_seed, Limits(s).store_rules
    return [Retired((unit, seed, rules), "No Sentinel nor fleet store firewall is left from a fleet: this gateway "
                    "is in none",
                    (f"systemctl disable --now {SENTINEL_UNIT} 2>/dev/null || true",
                     f"nft delete table inet {STORE_TABLE} 2>/dev/null || true",
                     f"rm -rf {unit} {seed} {rules} {SENTINEL_DIR}", "systemctl daemon-reload"))]


def context(s: Settings) -> dict[str, object]:
    return {"limits": Limits(s)}


def fleet_layout(s: Settings) -> dict[str, object]:
    """The fleet's rate-limit store, asked on this gateway's own address (password from the env file)."""
    return {"redis_port": s.fleet.redis_port, "sentinel_port": s.fleet.sentinel_port, "env_file": s.env_file,
            "password_variable": PASSWORD_VAR, "redis_ca": Limits(s).tls_ca}
