"""Every file the deploy puts on a gateway host, in one table (the host's own, then each service's
rows), and the one way they are installed.

Each row says where the file goes, where it comes from (a template, or a file of this repository
shipped as it is), its owner, group and mode, whether it holds a secret, the check a new version
must pass before it replaces the live one, and which services restart when it changes. The deploy
installs the rows in order (tasks/gateway.py), `fab status` compares the hosts against them for
drift, `fab keys.push` installs team-keys.json with the same staged install, and the tests read
the same table.
"""
from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from gateway import commands, front, metrics, render, services, shared_limits, tls, vrrp
from gateway.settings import Settings
from gateway.team_keys import KeyStore, host_file

REPO = Path(__file__).resolve().parent.parent
UNIT_DIR = "/etc/systemd/system"
LOGROTATE_PATH = "/etc/logrotate.d/litellm"
TEAM_KEYS = commands.TEAM_KEYS
AUTH_HOOK = f"{commands.HOOK_MODULE}.py"
# The services a row's change reaches (what the change does to each: gateway/services.py).
PROXY, REDIS, SENTINEL, FRONT, FLEET = (services.PROXY.unit, services.REDIS.unit, services.SENTINEL.unit,
                                        services.FRONT.unit, services.FLEET.unit)


@dataclass(frozen=True)
class ManagedFile:
    """One file on a gateway host, as the deploy wants it."""

    path: str
    source: str  # repository path: templates/NAME.j2, or a file shipped as it is
    user: str
    group: str
    mode: str  # octal, as stat -c %a prints it
    wanted: str  # the state it brings, for the operation's name
    content: bytes = field(repr=False)  # for a secret: every line but the secret one
    secret: bool = False  # holds the master key: never uploaded whole, never diffed
    validate: str | None = None  # run on the staged copy ({path}) before it replaces the live file
    restarts: tuple[str, ...] = ()  # the services a changed version reaches (their units: gateway/services.py)

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def is_unit(self) -> bool:
        return self.path.startswith(UNIT_DIR + "/")


@dataclass(frozen=True)
class Rows:
    """What every service's rows are made from, for one host."""

    s: Settings  # resolved() for the host
    host_name: str
    team_keys: str  # team-keys.json as it is to be installed
    issue: bool  # False for read-only tasks: no certificate or token is made
    served: tls.Material | None  # the front's certificate, with litellm_tls

    def readable(self, name: str, source: str, content: str, wanted: str, **extra) -> ManagedFile:
        """Read by the service, changed only by root: root:GROUP 0640."""
        return ManagedFile(f"{self.s.config_dir}/{name}", source, "root", self.s.group, "640", wanted,
                           content.encode(), **extra)

    def system(self, path: str, source: str, content: str, wanted: str, **extra) -> ManagedFile:
        return ManagedFile(path, source, "root", "root", "644", wanted, content.encode(), **extra)

    def template(self, name: str) -> tuple[str, str]:
        return f"templates/{name}", render.render(name, self.s, self.host_name)

    def unit(self, service: services.Service) -> ManagedFile:
        """The service's unit: a change of it reaches the service itself."""
        return self.system(f"{UNIT_DIR}/{service.unit}", *self.template(f"{service.unit}.j2"),
                           "is installed, hardened", restarts=(service.unit,))

    @property
    def store(self) -> tuple[str, ...]:
        """A fleet's Redis and Sentinel serve the front's certificate, verified by the same CA."""
        return (REDIS, SENTINEL) if self.s.fleet and self.s.tls else ()


ON_HOST_SOURCES = tuple(sorted(p.relative_to(REPO).as_posix() for p in (REPO / "on_host").glob("*.py")))
IN_PROXY_SOURCES = ("in_proxy/__init__.py", "in_proxy/log_limits.py", "in_proxy/serve.py")  # the proxy imports these


def shipped(source: str) -> tuple[str, str]:
    return source, (REPO / source).read_text()


def host_rows(r: Rows) -> list[ManagedFile]:
    """What the host itself has: the host-side scripts, the proxy log's rotation, the team keys."""
    return [
        *(r.system(f"{commands.HOST_LIB}/{source}", *shipped(source), "is installed for the deploy's checks and "
                   "fab status") for source in ON_HOST_SOURCES),
        r.system(LOGROTATE_PATH, *r.template("logrotate.j2"),
                 f"rotates {r.s.log_dir}/proxy.log daily, keeps {r.s.log_keep_days} old files"),
        # Re-read by the auth hook whenever it changes: a new, rotated or revoked key needs no restart.
        r.readable(TEAM_KEYS, "the operator's litellm_team_keys_file", r.team_keys,
                   "holds the team keys' hashes and limits"),
    ]


def store_rows(r: Rows) -> list[ManagedFile]:
    """Redis, the rate-limit counters."""
    s = r.s
    return [
        r.readable("redis.conf", *r.template("redis.conf.j2"),
                   f"keeps the rate-limit counters in memory, reachable at {s.redis_socket} only" if not s.fleet else
                   f"keeps the fleet's rate-limit counters, on port {s.fleet.redis_port} for the gateways only",
                   restarts=(REDIS,)),
        r.unit(services.REDIS),
    ]


def sentinel_rows(r: Rows) -> list[ManagedFile]:
    """A fleet's Sentinel, which names the Redis primary, and the firewall of the store's ports."""
    s = r.s
    return [
        # Loaded by Sentinel's and Redis' units at start: a change is applied by restarting
        # Sentinel (Redis keeps its counters; the table is the same for both).
        r.system(shared_limits.Limits(s).store_rules, *r.template("litellm-fleet-store.nft.j2"),
                 f"lets only the fleet's gateways reach Redis ({s.fleet.redis_port}) and Sentinel "
                 f"({s.fleet.sentinel_port}), checked by nft -c", validate="/usr/sbin/nft -c -f {path}",
                 restarts=(SENTINEL,)),
        r.readable("sentinel.conf", *r.template("sentinel.conf.j2"),
                   f"seeds Sentinel, which names the fleet's Redis primary (quorum {s.fleet.quorum} of "
                   f"{len(s.fleet.members)})", restarts=(SENTINEL,)),
        r.unit(services.SENTINEL),
    ]


def front_rows(r: Rows) -> list[ManagedFile]:
    """HAProxy's config and unit, after what its check reads: the certificate, the scrape token's
    digest, the CA the fleet's fronts verify each other with."""
    s, served = r.s, r.served
    rows = []
    if served:
        until = f"valid until {served.not_after:%Y-%m-%d}"
        rows += [
            ManagedFile(front.TLS_PEM, "litellm_tls (certificate chain and key)", "root", "root", "600",
                        f"holds the front's certificate for {', '.join(served.names)} and its key, root only",
                        served.pem, validate=f"{front.PEM_VARIABLE}={{path}} /usr/sbin/haproxy -c -q -f {front.CONFIG}",
                        restarts=(FRONT, *r.store)),
            r.system(front.TLS_CERT, "litellm_tls (certificate chain)", served.chain.decode(),
                     f"holds the front's certificate chain ({until}), which the host's own checks pin"),
        ]
    token = (metrics.ensure_token(s) if r.issue else metrics.read_token(s)) if s.metrics else None
    if token:
        rows.append(r.system(metrics.TOKEN_MAP, "litellm_metrics_token_file (its SHA-256)", metrics.token_map(token),
                             f"lets scrapes with the metrics token in on port {s.metrics.port} (holds its SHA-256 "
                             "only)", restarts=(FRONT,)))
    if s.fleet and served and front.Front(s).fleet_ca == front.FLEET_CA:
        rows.append(r.system(front.FLEET_CA, "litellm_tls (the CA clients are given)", Path(served.ca_file).read_text(),
                             "holds the CA the fronts verify each other's certificates with",
                             restarts=(FRONT, *r.store)))
    return [
        *rows,
        r.system(front.CONFIG, *r.template("litellm-front.cfg.j2"),
                 f"sends port {s.port} ({s.scheme}) to the serving proxy instance, checked by haproxy -c",
                 validate=f"{front.PEM_VARIABLE}={front.TLS_PEM} /usr/sbin/haproxy -c -q -f {{path}}",
                 restarts=(FRONT,)),
        r.unit(services.FRONT),
    ]


def proxy_rows(r: Rows) -> list[ManagedFile]:
    """The proxy instances (LiteLLM): what they read at start. A change means a switch-over."""
    s = r.s
    env_source, env = r.template("litellm.env.j2")
    return [
        # The proxy's entry point and its logging filter (logging.json), beside on_host/ on its PYTHONPATH.
        *(r.system(f"{commands.HOST_LIB}/{source}", *shipped(source), "is installed for the proxy's start and logging",
                   restarts=(PROXY,)) for source in IN_PROXY_SOURCES),
        r.readable("logging.json", *r.template("logging.json.j2"),
                   f"sends the proxy's log to the journal and {s.log_dir}/proxy.log", restarts=(PROXY,)),
        # Checked by the installed LiteLLM's Python before it replaces the live hook.
        r.readable(AUTH_HOOK, *shipped(f"in_proxy/{AUTH_HOOK}"), "lets the master key and team keys in, any other key "
                   "gets 401", validate=commands.hook_check_command(s, "{path}"), restarts=(PROXY,)),
        # Staged and checked by the installed LiteLLM before it replaces the config in place: a
        # config it refuses never reaches the disk the service (or its next restart) reads.
        r.readable("config.yaml", *r.template("config.yaml.j2"),
                   "holds the rendered model list and router settings, accepted by LiteLLM",
                   validate=commands.validate_command(s, "{path}"), restarts=(PROXY,)),
        ManagedFile(s.env_file, env_source, "root", "root", "600", "holds the master key and runtime settings",
                    env.encode(), secret=True, restarts=(PROXY,)),
        r.unit(services.PROXY),
    ]


def fleet_rows(r: Rows) -> list[ManagedFile]:
    """The fleet's address: keepalived's config (reloaded) and unit."""
    s = r.s
    return [
        r.system(vrrp.CONFIG, *r.template("litellm-fleet.conf.j2"),
                 f"holds {s.fleet.address} on one gateway at a time while its front answers (VRRP, priority "
                 f"{s.fleet.priority(r.host_name)})", validate="/usr/sbin/keepalived --config-test -f {path}",
                 restarts=(FLEET,)),
        r.unit(services.FLEET),
    ]


# Each service's rows, in the order the deploy installs them: the proxy's first, since the release's
# LiteLLM may refuse its config or auth hook (the deploy stops there), and a refused change must
# leave every other service's files as they were.
SERVICE_ROWS = {PROXY: proxy_rows, REDIS: store_rows, FRONT: front_rows, SENTINEL: sentinel_rows, FLEET: fleet_rows}


def managed_files(s: Settings, host_name: str, team_keys: str | None = None, issue: bool = True) -> list[ManagedFile]:
    """The table for one host, in the order the deploy installs it (the host's own files, then each
    service's, as SERVICE_ROWS orders them); `s` resolved() for the host. team-keys.json holds the operator's keys file
    (`litellm_team_keys_file`) unless `team_keys` gives its rendered content (what `fab keys.push`
    is about to install). Read-only tasks pass `issue=False`: no TLS certificate is made, and its
    rows are left out where none was made yet."""
    if s.workers == "auto":  # the unit holds the worker count
        raise ValueError("managed_files needs settings resolved() with the host's CPU count")
    if team_keys is None:
        team_keys = host_file(KeyStore(s.team_keys_file).read() if s.team_keys_file else {})
    r = Rows(s, host_name, team_keys, issue, tls.material(s, host_name, issue) if s.tls else None)
    hosted = {service.unit for service in services.on_host(s)}
    return [*host_rows(r), *(row for unit, rows in SERVICE_ROWS.items() if unit in hosted for row in rows(r))]


def instance_inputs(files: list[ManagedFile]) -> tuple[str, ...]:
    """The files a proxy instance reads at start: what a switch-over records it started with."""
    return tuple(f.path for f in files if PROXY in f.restarts)


def by_name(files: list[ManagedFile]) -> dict[str, ManagedFile]:
    return {f.name: f for f in files}


# The one staged install, used by the deploy's whole_file operation and by `fab keys.push`:
# created empty with its owner and mode before a byte is written, filled, checked, moved in place.

def staged(path: str) -> str:
    return f"{path}.staged"


def stage_command(f: ManagedFile) -> str:
    """An empty staged copy beside the file (so relative references resolve the same way), owner and mode first."""
    return (f"install -D -m {f.mode} -o {shlex.quote(f.user)} -g {shlex.quote(f.group)} "
            f"/dev/null {shlex.quote(staged(f.path))}")


def commit_commands(f: ManagedFile, check: bool = True) -> list[str]:
    """After the staged copy is filled: check it (when the row says how and `check`), then one move.

    When the check refuses it, the staged copy is removed and the command fails: the live file,
    and what reads it, are untouched.
    """
    copy = shlex.quote(staged(f.path))
    steps = []
    if f.validate and check:
        # validate quotes its {path} itself; settings keep paths to characters that need no quoting.
        steps.append(f"{f.validate.replace('{path}', staged(f.path))} || {{ rm -f {copy}; exit 1; }}")
    steps.append(f"mv -f {copy} {shlex.quote(f.path)}")
    return steps
