"""Every setting of the gateway: its defaults, its types, and the checks run before any host is touched.

The inventory supplies data (pyinfra host/group data, prefixed `litellm_`); `load()` merges it over
DEFAULTS, checks all of it, and returns one typed, frozen `Settings`. Every problem is reported at
once, each naming the setting and what would be right.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Whole:
    """A setting's check: a whole number from `low` to `high`."""

    low: int
    high: int

    def __call__(self, check: Checker, key: str) -> int:
        return check.integer(key, self.low, self.high)

    def __str__(self) -> str:
        return f"{self.low} to {self.high}"


@dataclass(frozen=True)
class Flag:
    """A setting's check: True or False."""

    def __call__(self, check: Checker, key: str) -> bool:
        return check.boolean(key)

    def __str__(self) -> str:
        return "True or False"


@dataclass(frozen=True)
class Setting:
    """One setting, declared once: its name, its default, the line of help the docs' table shows
    (docs/settings.md, made by `python -m gateway.settings_doc`) and, for a value the settings take
    as it is (the Settings field of its name without the prefix), its check, which the table shows
    too. A setting checked together with others (ports that must differ, paths, the fleet) is
    checked in its section of load() (or load_monitoring()). Every declared name is taken, any
    other of the prefix refused."""

    name: str
    default: Any
    help: str
    check: Whole | Flag | None = None


SEED_PLACEHOLDER_KEY = "sk-1234567890abcdef-test-key-please-replace"

DECLARED: tuple[Setting, ...] = (
    # LiteLLM release installed into the virtualenv. Always an exact version: a deploy must never
    # pick up "latest" by surprise. 1.108.7 is the newest whose [proxy] extra installs from PyPI.
    Setting("litellm_version", "1.108.7", "the LiteLLM release installed, an exact version"),
    # Further exact pins installed beside it. Without prisma, auth failures answer 500, not 401.
    Setting(
        "litellm_extra_requirements",
        ["prisma==0.15.0"],
        "further exact pins installed beside it (without prisma, auth failures answer 500)",
    ),
    # Where the gateway listens. 0.0.0.0 serves every interface; give a host address to narrow it.
    Setting(
        "litellm_bind_address",
        "0.0.0.0",
        "where the front listens: 0.0.0.0 (every interface) or one of the host's addresses",
    ),
    Setting("litellm_port", 4000, "the port clients use (the front, HAProxy)"),
    # The two proxy instances behind the front (HAProxy on litellm_port), on 127.0.0.1 only: one
    # serves while the other is started on a change, proves it answers and takes over; the first
    # is then drained and stopped. The instance's unit is litellm@PORT.service.
    Setting(
        "litellm_instance_ports",
        [4001, 4002],
        "the two proxy instances behind the front: one serves, the other takes over on a change",
    ),
    # TLS at the front. None: plain HTTP on litellm_port, as the seed's clients use it. "own-ca":
    # HTTPS with a certificate from a small CA the deploy creates once on the control machine
    # (litellm_tls_ca_dir; give clients its ca.crt). Or the operator's own certificate (chain, leaf
    # first) and unencrypted key, files on the control machine outside git:
    # {"cert_file": "~/tls/gw.crt", "key_file": "~/tls/gw.key", "ca_file": "~/tls/ca.crt"}.
    # Plain HTTP on the port is then refused (the TLS handshake fails before any request is read).
    # A fleet is "own-ca" unless set: its gateways send client keys and the rate-limit store's
    # password between them; "none-i-accept-cleartext" keeps a fleet on plain HTTP and plain Redis.
    Setting(
        "litellm_tls",
        None,
        'None: plain HTTP (a fleet: own-ca); "own-ca"; "none-i-accept-cleartext"; or {cert_file, key_file, ca_file}',
    ),
    Setting(
        "litellm_tls_ca_dir",
        "~/.local/share/litellm-gateway/ca",
        "the own CA's directory on the control machine (back it up)",
    ),
    # Names and addresses clients reach the gateway by, besides its inventory name (and
    # litellm_bind_address when it is one address): a DNS alias, the fleet's name.
    Setting("litellm_tls_names", [], "further names and addresses clients reach the gateway by (in its certificate)"),
    # A fleet: several gateway hosts serving clients at one floating address (VRRP, keepalived from
    # the distribution), held by the front of one healthy gateway, which spreads requests over
    # every gateway that is ready. None: each gateway serves at its own address, as before.
    # "IP" or "IP/PREFIX" (/32 when left out); every gateway then needs its own litellm_bind_address
    # and the fleet one litellm_master_key.
    Setting(
        "litellm_fleet_address",
        None,
        "a fleet's floating address, IP or IP/PREFIX; None: each gateway at its own address",
    ),
    # The DNS name clients use for the fleet (checked to resolve to the address; in certificates).
    Setting("litellm_fleet_name", None, "the DNS name clients use for the fleet (checked to resolve to the address)"),
    Setting(
        "litellm_fleet_interface",
        "eth0",
        "the interface that holds litellm_bind_address, where the fleet's address is added",
    ),
    Setting(
        "litellm_fleet_router_id", 51, "VRRP virtual router id, 1-255, unique among fleets on that network"
    ),
    # The fleet's rate-limit store: Redis on every gateway (the first in the inventory starts as its
    # primary, the others replicate it) watched by Redis Sentinel on every gateway, which promotes a
    # replica when the primary is lost. Reached by the gateways only, with a password derived from
    # the master key.
    Setting("litellm_fleet_redis_port", 6380, "the fleet's rate-limit Redis on every gateway"),
    Setting("litellm_fleet_sentinel_port", 26380, "Redis Sentinel on every gateway, which names the Redis primary"),
    # The gateways of the fleet as [inventory name, litellm_bind_address], in inventory order (the
    # first is preferred for the address). gateway_group() fills it from the group's own hosts.
    Setting(
        "litellm_fleet_members",
        [],
        "[inventory name, bind address] of every gateway of the fleet (gateway_group fills it)",
    ),
    # Metrics: LiteLLM's Prometheus callback on every instance (requests, errors, latency and
    # tokens per model, per deployment and per team; no key or key hash among the labels), served
    # by the front on litellm_metrics_port to a scrape that brings the token in
    # litellm_metrics_token_file (made once on the control machine, 0600; the hosts hold only its
    # SHA-256). The master key opens nothing there, and the public port serves no metrics. False: no
    # callback, no port.
    Setting(
        "litellm_metrics",
        True,
        "LiteLLM's Prometheus metrics on every instance, served on litellm_metrics_port; False: none",
    ),
    Setting("litellm_metrics_port", 9400, "where the front serves the metrics, to a scrape with the token"),
    Setting(
        "litellm_metrics_token_file",
        "~/.local/share/litellm-gateway/metrics.token",
        "the scrape token on the control machine (made once, 0600; hosts hold its SHA-256)",
    ),
    # The address the instances listen on: loopback, so only the front (and the host) reach them.
    Setting(
        "litellm_instance_address",
        "127.0.0.1",
        "where the proxy instances listen: loopback, only the front reaches them",
    ),
    # Seconds a switch-over waits for the requests still running on the old instance (long
    # streaming completions included) before it stops it anyway.
    Setting("litellm_drain_timeout", 300,
            "seconds a switch-over waits for the old instance's requests before stopping it", check=Whole(1, 86400)),
    # What one client may make the front take, per source address (a fleet's gateways are exempt
    # between themselves): request bodies up to this many MiB (larger: 413, before an instance
    # reads a byte), this many open connections, this many requests per second (10-s average).
    Setting("litellm_max_body_mib", 16, "largest request body, MiB (larger: 413 at the front)", check=Whole(1, 1024)),
    Setting("litellm_client_max_connections", 128, "open connections per source address", check=Whole(1, 100000)),
    Setting("litellm_client_max_rate", 200, "requests per second per source address, over 10 s (then 429)",
            check=Whole(1, 100000)),
    # Where the hosts get the lock's packages. None: from the control machine, which downloads the
    # lock's wheels once into `litellm_wheel_cache` and sends them to each host; the hosts' pip
    # uses no index at all. A URL: the hosts' pip installs from this PyPI mirror or proxy instead
    # (credentials belong in the host's pip.conf or netrc, never here). Hash-checked either way.
    Setting(
        "litellm_pip_index_url",
        None,
        "None: the hosts get the lock's wheels from the control machine; a URL: a PyPI mirror",
    ),
    Setting(
        "litellm_wheel_cache", "~/.cache/litellm-gateway/wheels", "the control machine's cache of the lock's wheels"
    ),
    # Releases (virtualenvs, one per lock) kept on each host: the serving one, the one
    # `fab rollback` goes back to, and the newest others up to this number.
    Setting(
        "litellm_releases_keep",
        3,
        "releases (virtualenvs) kept per host: the serving one, the rollback one, the newest others", check=Whole(2, 50)
    ),
    # uvicorn worker processes: "auto" is one per CPU of the host, at most 8 (each worker holds
    # ~400 MB), or a number. The workers share their rate-limit counters through the host's own
    # Redis (Unix socket only), so a team's limits hold whatever the count.
    Setting("litellm_workers", "auto", 'uvicorn workers per instance: "auto" (one per CPU, at most 8) or a number'),
    # Router: how requests are spread over the deployments of one model, and how failures count.
    Setting("litellm_routing_strategy", "least-busy", "how requests are spread over a model's deployments "
            "(least-busy: by each worker's own requests in flight)"),
    Setting(
        "litellm_timeout", 30, "seconds a backend call may take, streaming or not", check=Whole(1, 3600)
    ),
    Setting(
        "litellm_num_retries", 2, "retries of a failed call, on another deployment where one exists", check=Whole(0, 10)
    ),
    Setting(
        "litellm_allowed_fails", 3, "failures in a minute before a deployment is cooled down", check=Whole(0, 1000)
    ),
    Setting(
        "litellm_cooldown_time", 30, "seconds a failing deployment is left out", check=Whole(0, 86400)
    ),
    # Service account: a system user, no login shell, home outside /home.
    Setting("litellm_user", "litellm", "the service account's user (a system user, no login)"),
    Setting("litellm_group", "litellm", "the service account's group"),
    Setting("litellm_uid", 1002, "the service user's uid", check=Whole(100, 65533)),
    Setting("litellm_gid", 1002, "the service group's gid", check=Whole(100, 65533)),
    Setting("litellm_home", "/var/lib/litellm", "the service user's home (outside /home, not created)"),
    # Paths on the gateway hosts.
    Setting("litellm_venv_dir", "/opt/litellm", "where the releases (virtualenvs) live on the hosts"),
    Setting("litellm_config_dir", "/etc/litellm", "the gateway's configuration on the hosts"),
    Setting("litellm_log_dir", "/var/log/litellm", "proxy.log on the hosts"),
    # proxy.log is rotated daily (sooner past 100 MB) by logrotate; this many old files are kept.
    Setting("litellm_log_keep_days", 14, "rotated proxy.log files kept (daily, or at 100 MB)", check=Whole(1, 3650)),
    # The master key (operators' key). None: generate one on each host on the first deploy and keep
    # it there. A value: it comes from outside git (environment, secret store, a 0600 file).
    Setting("litellm_master_key", None, "the operators' key; None: each host generates one on its first deploy"),
    # A master-key rotation: the key being replaced, still let in (and, in a fleet, its Redis
    # password still accepted) until a deploy without it. Only its SHA-256 reaches the hosts.
    Setting(
        "litellm_previous_master_key",
        None,
        "while rotating the master key: the old one, still accepted until a deploy without it",
    ),
    # Team keys (hashes and limits) on the operator's machine, outside git; None: no team keys,
    # only the master key. Managed with `fab keys.create|list|rotate|revoke`.
    Setting(
        "litellm_team_keys_file",
        None,
        "the team keys (hashes and limits) on the control machine; None: master key only",
    ),
    # Public model name -> {"tag": Ollama tag, "mode": "chat", "context_window": int}. The window is
    # the context Ollama serves the model with (prompt and answer together; sent as num_ctx with
    # every request); default 2048, the seed's figure. "mode": "embedding" serves it at
    # /v1/embeddings; "vision": true lets images through to it. "keep_loaded": true keeps the model resident
    # on its backends (each request and a timer send keep_alive -1; the backends must declare
    # gpu_memory_gib, which the preflight holds the kept models' sizes against).
    Setting("litellm_models", {}, "public model name -> {tag, mode, context_window[, vision, keep_loaded]}"),
    # Backend name -> {"address": host name or IP, "port": 11434, "models": [public model names]},
    # or {"api_base": "http://host:11434", "models": [...]} (Ollama's root URL, never .../v1);
    # optionally "context_windows": {model: int} where this backend serves a model with another window,
    # and "gpu_memory_gib": what its GPUs hold (required where a keep_loaded model is served).
    Setting("litellm_backends", {}, "backend name -> {address, port, models[, context_windows, gpu_memory_gib]} "
            "or {api_base, models}"),
    # Preflight: nameservers to ask (None: the system's), seconds a lookup or backend call may
    # take, and check classes to skip in an emergency ("dns", "backends"; loudly reported).
    Setting("litellm_dns_nameservers", None, "nameservers the preflight asks; None: the system's"),
    Setting("litellm_preflight_timeout", 3, "seconds a preflight lookup or backend call may take", check=Whole(1, 60)),
    Setting(
        "litellm_preflight_skip", [], 'preflight checks to skip in an emergency: "dns", "backends" (loudly reported)'
    ),
    # Prompts that do not fit a model's window are refused (400 context_length_exceeded) before
    # any backend is called, instead of Ollama cutting them short in silence. LiteLLM counts with
    # OpenAI's cl100k tokenizer (it knows no Ollama model's own offline), which counts fewer tokens
    # than most of these models do: the count is raised by this many percent before it is held
    # against the window.
    Setting(
        "litellm_context_check",
        True,
        "refuse prompts that do not fit a model's window (400) before a backend is called", check=Flag()
    ),
    Setting("litellm_context_margin", 25, "percent added to LiteLLM's token count before it is held against the window",
            check=Whole(0, 300)),
    # Residency routing (in_proxy/residency.py): a model's requests go to the backends holding it
    # loaded (Ollama's /api/ps, asked every 2 s), so backends do not load and evict models in turn.
    Setting("litellm_residency_routing", False, "send a model's requests to the backends that hold it loaded",
            check=Flag()),
    # Spilling early costs loads: in the lab's benchmark a spill at 2 made 164 loads of 300 requests,
    # at 8 (never reached by its 8 clients) 60 (bench/results/2026-12-04-residency-300-spill.json).
    Setting("litellm_residency_spill", 8, "requests in flight on every warm backend (per worker) before a cold "
            "one may load the model too", check=Whole(1, 1000)),
)
DEFAULTS: dict[str, Any] = {s.name: s.default for s in DECLARED}

PREFLIGHT_CLASSES = ("dns", "backends")
# ssh_strict_host_key_checking: the values pyinfra takes (None: unset), read by the fab tasks too.
SSH_STRICT_POLICIES = (None, "yes", "ask", "accept-new", "no", "off")

ROUTING_STRATEGIES = ("simple-shuffle", "least-busy", "usage-based-routing", "latency-based-routing")
MODEL_MODES = ("chat", "completion", "embedding")
WEAK_KEYS = {
    "sk-1234",
    "sk-12345",
    "sk-123456",
    "sk-test",
    "sk-admin",
    "sk-master",
    "sk-password",
    SEED_PLACEHOLDER_KEY,
}
WEAK_WORDS = ("replace", "change", "example", "test-key", "placeholder", "secret", "password")
# Every pattern is applied with fullmatch: `$` alone would let a trailing newline through, and a
# value reaches shell commands, unit files, YAML and env files. ASCII only, short, no quoting needed.
EXACT_PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}(\[[A-Za-z0-9,._-]{1,100}\])?==[0-9][A-Za-z0-9.+!-]{0,49}")
VERSION = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6}){0,4}([a-z]{1,5}[0-9]{1,4})?(\.post[0-9]{1,4})?")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
HOSTNAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")
ACCOUNT = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
INDEX_URL = re.compile(r"https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?(/[A-Za-z0-9._~+-]{1,100}){0,10}/?")
PATH = re.compile(r"(/[A-Za-z0-9._-]{1,64}){1,16}")
# A master key is one token of printable ASCII: no space or newline (a newline would write a second
# variable into litellm.env), no quote, backslash, $ or ` (systemd and shells give them meaning).
MASTER_KEY = re.compile(r"sk-[A-Za-z0-9._~+/=:@,!*^-]{1,256}")
# Accounts that belong to the system or to people: the service account is never one of them (the
# deploy would renumber it and take its login away). The host check refuses any other foreign one.
RESERVED_ACCOUNTS = frozenset(
    {
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "gnats",
        "nobody",
        "nogroup",
        "_apt",
        "messagebus",
        "sshd",
        "syslog",
        "adm",
        "admin",
        "sudo",
        "wheel",
        "staff",
        "users",
        "tty",
        "disk",
        "kmem",
        "dialout",
        "cdrom",
        "floppy",
        "audio",
        "video",
        "plugdev",
        "netdev",
        "shadow",
        "utmp",
        "operator",
        "src",
        "voice",
        "tape",
        "sasl",
        "input",
        "kvm",
        "render",
        "crontab",
        "redis",
        "postgres",
        "mysql",
        "ollama",
        "polkitd",
        "uuidd",
        "tcpdump",
        "ntp",
        "_chrony",
        "dnsmasq",
        "avahi",
        "lxd",
        "docker",
        "ubuntu",
        "debian",
        "ec2-user",
        "centos",
        "systemd-journal",
        "systemd-network",
        "systemd-resolve",
        "systemd-timesync",
        "systemd-coredump",
        "ssh",
        "ssl-cert",
        "fax",
        "dip",
        "lpadmin",
    }
)


class SettingsError(ValueError):
    """One or more settings are wrong; `problems` lists each as 'where: what is wrong; fix'."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the gateway settings:\n{lines}")


@dataclass(frozen=True)
class Model:
    name: str
    tag: str
    mode: str
    context_window: int
    keep_loaded: bool = False  # kept resident on every backend that serves it (keep_alive -1, re-sent by a timer)
    vision: bool = False  # takes images (a vision model); others get 400 for an image


@dataclass(frozen=True)
class Backend:
    name: str
    address: str
    port: int
    models: tuple[str, ...]
    context_windows: tuple[tuple[str, int], ...] = ()  # (model, window) where it differs from the model's
    gpu_memory_gib: float | None = None  # what its GPUs hold (Ollama does not say): checked against keep_loaded

    @property
    def api_base(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


AUTO_WORKERS_MAX = 8
DEFAULT_CONTEXT_WINDOW = 2048  # the seed's figure
WINDOW_RANGE = (256, 2_097_152)
REDIS_SOCKET = "/run/litellm-redis/redis.sock"  # RuntimeDirectory= of litellm-redis.service


@dataclass(frozen=True)
class TLS:
    """Where the front's certificate comes from (gateway/tls.py makes or checks it)."""

    own_ca: bool
    ca_dir: str  # the own CA's directory on the control machine
    cert_file: str | None = None  # the operator's certificate chain, leaf first
    key_file: str | None = None
    ca_file: str | None = None  # what the operator's clients verify with, for `lab status` and tests
    names: tuple[str, ...] = ()  # further names clients reach the gateway by


@dataclass(frozen=True)
class Fleet:
    """The gateways sharing one floating address; the template of each gateway reads its own view."""

    address: str
    prefix: int
    interface: str
    router_id: int
    members: tuple[tuple[str, str], ...]  # (inventory name, bind address), in inventory order
    name: str | None = None
    redis_port: int = 6380
    sentinel_port: int = 26380

    @property
    def quorum(self) -> int:
        """Sentinels that must agree the primary is lost: a majority of the gateways."""
        return len(self.members) // 2 + 1

    @property
    def first_address(self) -> str:
        """The gateway whose Redis starts as the primary (Sentinel moves it afterwards)."""
        return self.members[0][1]

    def priority(self, host_name: str) -> int:
        """VRRP priority: the first gateway of the inventory is preferred, then the next."""
        names = [name for name, _ in self.members]
        return 200 - 10 * names.index(host_name) if host_name in names else 100

    def address_of(self, host_name: str) -> str:
        return dict(self.members)[host_name]

    def peers(self, host_name: str) -> list[str]:
        return [address for name, address in self.members if name != host_name]

    @property
    def scope_host(self) -> bool:
        """127/8 (a lab): the kernel takes it on an interface only with scope host."""
        return ipaddress.ip_address(self.address).is_loopback


@dataclass(frozen=True)
class Metrics:
    """Where the front serves the instances' and its own metrics, and the scrape token's file."""

    port: int
    token_file: str  # on the control machine


# The Prometheus client LiteLLM's callback needs (its [proxy] extra leaves it out): in every lock,
# so that turning metrics on or off changes no release.
PROMETHEUS_CLIENT = "prometheus-client==0.23.1"
# uvicorn's HTTP parser in C (its [standard] extra; LiteLLM's [proxy] extra leaves it out): uvicorn
# picks it when it is installed, else parses each request and response in Python with h11.
HTTPTOOLS = "httptools==0.9.0"


@dataclass(frozen=True)
class Settings:
    """The checked settings (load()); no field has a default of its own: DECLARED holds them."""

    version: str
    extra_requirements: tuple[str, ...]
    bind_address: str
    port: int
    instance_ports: tuple[int, int]
    instance_address: str
    workers: int | str  # a number, or "auto" until resolved() with the host's CPU count
    routing_strategy: str
    timeout: int
    num_retries: int
    allowed_fails: int
    cooldown_time: int
    user: str
    group: str
    uid: int
    gid: int
    home: str
    venv_dir: str
    config_dir: str
    log_dir: str
    master_key: str | None = field(repr=False)  # never in a repr, log or traceback
    previous_master_key: str | None = field(repr=False)  # a rotation's old key: let in until the next deploy
    models: tuple[Model, ...]
    backends: tuple[Backend, ...]
    dns_nameservers: tuple[str, ...] | None
    preflight_timeout: int
    preflight_skip: frozenset[str]
    team_keys_file: str | None
    log_keep_days: int
    context_check: bool
    context_margin: int  # percent
    residency_routing: bool
    residency_spill: int
    drain_timeout: int
    max_body_mib: int
    client_max_connections: int
    client_max_rate: int
    pip_index_url: str | None
    wheel_cache: str
    releases_keep: int
    tls: TLS | None
    fleet: Fleet | None
    metrics: Metrics | None

    def resolved(self, cpus: int) -> Settings:
        """These settings on a host with `cpus` CPUs: "auto" workers become a number."""
        if self.workers != "auto":
            return self
        return replace(self, workers=max(1, min(cpus, AUTO_WORKERS_MAX)))

    @property
    def releases_dir(self) -> str:
        """One virtualenv per release (lock) below it, installed beside the others, never into one."""
        return f"{self.venv_dir}/releases"

    @property
    def slots_dir(self) -> str:
        """slots/PORT: the link to the release instance litellm@PORT runs (its unit's ExecStart)."""
        return f"{self.venv_dir}/slots"

    @property
    def env_file(self) -> str:
        """The root-only environment file: the master key (and a fleet's Redis password) for the units."""
        return f"{self.config_dir}/litellm.env"

    @property
    def current_link(self) -> str:
        """The link to the release serving now, for operators and the fab tasks."""
        return f"{self.venv_dir}/current"

    @property
    def redis_socket(self) -> str:
        return REDIS_SOCKET

    @property
    def requirements(self) -> str:
        """The pip requirements file of the virtualenv: exact pins only."""
        pins = [f"litellm[proxy]=={self.version}", *self.extra_requirements, PROMETHEUS_CLIENT, HTTPTOOLS]
        return "\n".join(pins) + "\n"

    @property
    def deployments(self) -> list[tuple[Model, Backend]]:
        """One (model, backend) pair per model_list entry, in inventory order."""
        return [(m, b) for m in self.models for b in self.backends if m.name in b.models]

    @staticmethod
    def window(model: Model, backend: Backend) -> int:
        """The context `backend` serves `model` with: its own override, or the model's window."""
        return dict(backend.context_windows).get(model.name, model.context_window)

    @property
    def kept_loaded(self) -> list[tuple[Model, Backend]]:
        """The deployments whose model is kept resident (keep_loaded), in inventory order."""
        return [(m, b) for m, b in self.deployments if m.keep_loaded]

    @property
    def windows_differ(self) -> bool:
        """Whether some model is served with different windows by its backends: only then must the router
        pick, per prompt, a deployment whose window holds it (the hook refuses what fits none)."""
        return any(len({self.window(m, b) for m2, b in self.deployments if m2 == m}) > 1 for m in self.models)

    @property
    def state_directory(self) -> str:
        """StateDirectory= of the unit: the home, relative to /var/lib."""
        return self.home.removeprefix("/var/lib/")

    @property
    def logs_directory(self) -> str:
        """LogsDirectory= of the unit: the log dir, relative to /var/log."""
        return self.log_dir.removeprefix("/var/log/")

    @property
    def local_url(self) -> str:
        """The URL a process on the gateway host itself reaches the proxy at."""
        address = "127.0.0.1" if self.bind_address in ("0.0.0.0", "::") else self.bind_address
        return f"{self.scheme}://{'[' + address + ']' if ':' in address else address}:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


def weak_key_reason(key: str) -> str | None:
    """Why a master key must not be used, or None when it is acceptable."""
    if key in WEAK_KEYS:
        return "it is a published placeholder/default key"
    if not key.startswith("sk-"):
        return "LiteLLM master keys must start with 'sk-'"
    if not MASTER_KEY.fullmatch(key):
        return (
            "it is not one token of printable characters: use letters, digits and . _ ~ + / = : @ , ! * ^ - "
            "only (no spaces, newlines, quotes, backslashes, $ or `), at most 256 after 'sk-'"
        )
    body = key[3:]
    if len(body) < 32:
        return f"it has {len(body)} characters after 'sk-'; use at least 32 random ones"
    if any(word in key.lower() for word in WEAK_WORDS):
        return "it contains a placeholder word"
    if len(set(body)) < 10:
        return "it has too few distinct characters to be random"
    return None


def shown(value: Any, limit: int = 60) -> str:
    """A value as an error message quotes it: repr (newlines and quotes visible), cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def plain_ip(value: Any) -> bool:
    """An IPv4 or IPv6 address without a %scope (which would reach unit files and URLs as is)."""
    try:
        return isinstance(value, str) and "%" not in value and bool(ipaddress.ip_address(value))
    except ValueError:
        return False


def host_problems(name: Any, data: Mapping[str, Any]) -> list[str]:
    """The inventory's own SSH settings for one host, which the deploy and the fab tasks both use."""
    found = []
    if not isinstance(name, str) or not (HOSTNAME.fullmatch(name) or plain_ip(name)):
        found.append(f"host name {shown(name)}: give a DNS name or an IP address")
    ssh_host = data.get("ssh_hostname")
    if ssh_host is not None and not (
        isinstance(ssh_host, str) and (HOSTNAME.fullmatch(ssh_host) or plain_ip(ssh_host))
    ):
        found.append(f"ssh_hostname: {shown(ssh_host)} is neither a host name nor an IP address")
    user = data.get("ssh_user")
    if user is not None and not (isinstance(user, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9._-]{0,31}", user)):
        found.append(f"ssh_user: {shown(user)} is not a user name")
    port = data.get("ssh_port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        found.append(f"ssh_port: {shown(port)} is out of range; set an integer from 1 to 65535")
    strict = data.get("ssh_strict_host_key_checking")
    if strict not in SSH_STRICT_POLICIES:
        found.append(f"ssh_strict_host_key_checking: {shown(strict)} is not one of yes, accept-new, no")
    for key in ("ssh_key", "ssh_known_hosts_file"):
        value = data.get(key)
        if value is not None and not (
            isinstance(value, str) and value.strip() == value and value and value.isprintable()
        ):
            found.append(f"{key}: {shown(value)} is not a file path")
    if not isinstance(data.get("_sudo", False), bool):
        found.append(f"_sudo: {shown(data.get('_sudo'))} is not True or False")
    return found


class Checker:
    """Collects problems instead of stopping at the first."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.problems: list[str] = []

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")

    def integer(self, key: str, low: int, high: int, value: Any = None, where: str | None = None) -> int:
        value = self.data[key] if value is None else value
        where = where or key
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(where, f"{shown(value)} is not a whole number; set an integer from {low} to {high}")
            return low
        if not low <= value <= high:
            self.problem(where, f"{value} is out of range; set an integer from {low} to {high}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.data[key]
        if not isinstance(value, bool):
            self.problem(key, f"{shown(value)} is not True or False")
            return True
        return value

    def text(self, key: str, pattern: re.Pattern | None = None, hint: str = "") -> str:
        value = self.data[key]
        if not isinstance(value, str) or not value:
            self.problem(key, f"{shown(value)} is not a non-empty string{'; ' + hint if hint else ''}")
            return ""
        if pattern is not None and not pattern.fullmatch(value):
            self.problem(key, f"{shown(value)} is not valid; {hint}")
            return ""
        return value

    def path(self, key: str) -> str:
        value = self.text(
            key,
            PATH,
            "give an absolute path of letters, digits and . _ - only (no spaces, quotes or "
            "other signs, at most 16 parts), without a trailing /",
        )
        if any(part in (".", "..") for part in value.split("/")):
            self.problem(key, f"{shown(value)} has a . or .. part; give the path itself")
        if value.startswith("/home/") or value == "/home":
            self.problem(
                key,
                f"{shown(value)} is under /home, which the hardened unit hides (ProtectHome); "
                "use /opt, /var/lib or /etc",
            )
        return value


def _models(check: Checker) -> list[Model]:
    raw = check.data["litellm_models"]
    if not isinstance(raw, Mapping) or not raw:
        check.problem("litellm_models", "no models are defined; map each public name to {'tag': '<ollama tag>'}")
        return []
    models = []
    seen: dict[str, str] = {}
    for name, spec in raw.items():
        where = f"litellm_models[{shown(name, 40)}]"
        folded = str(name).lower()
        if folded in seen:
            check.problem(
                where,
                f"duplicates the model name {seen[folded]!r} (names are case-insensitive for clients); "
                "give each model one name",
            )
        seen.setdefault(folded, str(name))
        if not isinstance(name, str) or not NAME.fullmatch(name):
            check.problem(where, "a model name may hold letters, digits and . _ : - only")
        if not isinstance(spec, Mapping):
            check.problem(where, "must be a mapping like {'tag': 'phi3:3.8b', 'context_window': 2048}")
            continue
        if "max_input_tokens" in spec:
            check.problem(
                f"{where}.max_input_tokens",
                "is now context_window: the window Ollama serves the model with, "
                "prompt and answer together; rename the key",
            )
        unknown = set(spec) - {"tag", "mode", "context_window", "max_input_tokens", "keep_loaded", "vision"}
        if unknown:
            check.problem(where, f"unknown keys {sorted(unknown)}; allowed: tag, mode, context_window, keep_loaded, "
                          "vision")
        tag = spec.get("tag")
        if not isinstance(tag, str) or not NAME.fullmatch(tag):
            check.problem(
                f"{where}.tag", f"{shown(tag)} is not an Ollama model tag such as 'phi3:3.8b-mini-128k-instruct-q8_0'"
            )
            tag = ""
        mode = spec.get("mode", "chat")
        if mode not in MODEL_MODES:
            check.problem(f"{where}.mode", f"{shown(mode)} is not one of {', '.join(MODEL_MODES)}")
        window = check.integer(
            "", *WINDOW_RANGE, spec.get("context_window", DEFAULT_CONTEXT_WINDOW), f"{where}.context_window"
        )
        flags = {}
        for flag in ("keep_loaded", "vision"):
            flags[flag] = spec.get(flag, False)
            if not isinstance(flags[flag], bool):
                check.problem(f"{where}.{flag}", f"{shown(flags[flag])} is not true or false")
                flags[flag] = False
        if flags["vision"] and mode == "embedding":
            check.problem(f"{where}.vision", "an embedding model takes no images; drop vision or the embedding mode")
        models.append(Model(str(name), tag, mode, window, **flags))
    return models


def _split_api_base(check: Checker, where: str, api_base: Any) -> tuple[str, int] | None:
    """(address, port) of an Ollama root URL such as http://llm01:11434."""
    if not isinstance(api_base, str) or not api_base.isprintable() or " " in api_base:
        # urlsplit would silently drop a newline or tab: refuse it instead.
        check.problem(where, f"{shown(api_base)} is not a URL like 'http://llm01.example.org:11434'")
        return None
    parsed = urlsplit(api_base)
    if parsed.path.rstrip("/").endswith("/v1"):
        check.problem(
            where,
            f"{shown(api_base)} ends in /v1: ollama_chat/ calls Ollama's native API at the root; "
            f"use '{parsed.scheme}://{parsed.netloc}'",
        )
        return None
    if parsed.scheme != "http" or not parsed.hostname or parsed.path.strip("/") or parsed.query:
        check.problem(where, f"{shown(api_base)} must be http://HOST[:PORT] with no path, like 'http://llm01:11434'")
        return None
    try:
        port = parsed.port or 11434
    except ValueError:
        check.problem(where, f"{shown(api_base)} has a port out of range; use 1 to 65535")
        return None
    return parsed.hostname, port


def _gpu_memory(check: Checker, where: str, value: Any) -> float | None:
    """A backend's GPU memory in GiB (absent: None)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.5 <= value <= 65536:
        check.problem(where, f"{shown(value)} is not a size in GiB between 0.5 and 65536, like 24 or 79.6")
        return None
    return float(value)


def _backends(check: Checker, models: list[Model]) -> list[Backend]:
    model_names = {m.name for m in models}
    kept = {m.name for m in models if m.keep_loaded}
    raw = check.data["litellm_backends"]
    if not isinstance(raw, Mapping) or not raw:
        check.problem(
            "litellm_backends", "no backends are defined; map each Ollama server to {'address': ..., 'models': [...]}"
        )
        return []
    backends = []
    for name, spec in raw.items():
        where = f"litellm_backends[{shown(name, 40)}]"
        if not isinstance(spec, Mapping):
            check.problem(
                where, "must be a mapping like {'address': 'llm01.example.org', 'port': 11434, 'models': [...]}"
            )
            continue
        unknown = set(spec) - {"address", "port", "models", "api_base", "context_windows", "gpu_memory_gib"}
        if unknown:
            check.problem(
                where, f"unknown keys {sorted(unknown)}; allowed: address, port, models (or api_base), "
                "context_windows, gpu_memory_gib"
            )
        spec = dict(spec)
        if "api_base" in spec:
            parsed = _split_api_base(check, f"{where}.api_base", spec.pop("api_base"))
            if parsed:
                spec["address"], spec["port"] = parsed
        if not isinstance(name, str) or not NAME.fullmatch(name):
            check.problem(where, "a backend name may hold letters, digits and . _ : - only (at most 128)")
        address = spec.get("address", name)
        if not plain_ip(address) and not (isinstance(address, str) and HOSTNAME.fullmatch(address)):
            check.problem(f"{where}.address", f"{shown(address)} is neither a host name nor an IP address")
            address = ""
        port = check.integer("", 1, 65535, spec.get("port", 11434), f"{where}.port")
        served = spec.get("models", [])
        if not isinstance(served, (list, tuple)) or not served:
            check.problem(f"{where}.models", "list the public model names this backend serves")
            served = []
        for model in served:
            if model not in model_names:
                check.problem(
                    f"{where}.models", f"{shown(model)} is not defined in litellm_models; define it or remove it here"
                )
        if len(set(served)) != len(served):
            check.problem(f"{where}.models", "lists a model twice")
        windows = spec.get("context_windows", {})
        if not isinstance(windows, Mapping):
            check.problem(
                f"{where}.context_windows",
                "must map a model this backend serves to its window, like {'phi3-3.8b': 8192}",
            )
            windows = {}
        for model, window in windows.items():
            if model not in served:
                check.problem(f"{where}.context_windows", f"{shown(model)} is not among this backend's models")
            check.integer("", *WINDOW_RANGE, window, f"{where}.context_windows[{shown(model, 40)}]")
        gpu_memory = _gpu_memory(check, f"{where}.gpu_memory_gib", spec.get("gpu_memory_gib"))
        if gpu_memory is None and "gpu_memory_gib" not in spec and kept & set(served):
            check.problem(
                f"{where}.gpu_memory_gib",
                f"is needed: it serves {', '.join(sorted(kept & set(served)))} (keep_loaded), whose sizes the "
                "preflight holds against it; give its GPUs' memory, like 'gpu_memory_gib': 24 "
                "(nvidia-smi --query-gpu=memory.total)",
            )
        backends.append(
            Backend(str(name), address, port, tuple(served), tuple(sorted((str(m), w) for m, w in windows.items())),
                    gpu_memory)
        )
    served_somewhere = {m for b in backends for m in b.models}
    for model in sorted(model_names - served_somewhere):
        check.problem(f"litellm_models[{model!r}]", "no backend serves it; add it to a backend's models or remove it")
    return backends


def control_path(check: Checker, where: str, value: Any) -> str | None:
    """A file or directory on the control machine, kept outside the repository (git)."""
    if not isinstance(value, str) or not value or not value.isprintable() or len(value) > 4096:
        check.problem(where, f"{shown(value)} is not a path on the control machine")
        return None
    if Path(value).expanduser().resolve().is_relative_to(REPO):
        check.problem(
            where,
            f"{shown(value)} is inside the repository; keep keys and certificates outside git "
            "(e.g. under ~/.config/litellm-gateway/)",
        )
        return None
    return value


CLEARTEXT = "none-i-accept-cleartext"  # litellm_tls: a fleet without TLS, said in words


def _tls(check: Checker) -> TLS | None:
    raw = check.data["litellm_tls"]
    ca_dir = control_path(check, "litellm_tls_ca_dir", check.data["litellm_tls_ca_dir"]) or ""
    names = check.data["litellm_tls_names"]
    if not isinstance(names, (list, tuple)) or not all(
        isinstance(n, str) and (HOSTNAME.fullmatch(n) or plain_ip(n)) for n in names
    ):
        check.problem(
            "litellm_tls_names",
            f"{shown(names)}: list the host names and IP addresses clients use, "
            "like ['llm-api.example.org', '10.1.2.3']",
        )
        names = []
    if raw is None and check.data["litellm_fleet_address"] is not None:
        raw = "own-ca"  # a fleet's gateways talk to each other: encrypted unless the inventory says otherwise
    if raw is None or raw == CLEARTEXT:
        if names:
            check.problem(
                "litellm_tls_names",
                "names a certificate, but litellm_tls is None (plain HTTP); set litellm_tls too, or remove the names",
            )
        return None
    if raw == "own-ca":
        return TLS(own_ca=True, ca_dir=ca_dir, names=tuple(names))
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"cert_file", "key_file", "ca_file"}
        if unknown:
            check.problem("litellm_tls", f"unknown keys {sorted(unknown)}; allowed: cert_file, key_file, ca_file")
        if "cert_file" not in raw or "key_file" not in raw:
            check.problem("litellm_tls", "give both cert_file and key_file (files on this machine, outside git)")
            return None
        cert = control_path(check, "litellm_tls.cert_file", raw["cert_file"])
        key = control_path(check, "litellm_tls.key_file", raw["key_file"])
        ca = control_path(check, "litellm_tls.ca_file", raw["ca_file"]) if raw.get("ca_file") is not None else None
        return TLS(own_ca=False, ca_dir=ca_dir, cert_file=cert, key_file=key, ca_file=ca, names=tuple(names))
    check.problem(
        "litellm_tls",
        f"{shown(raw)} is none of: None (plain HTTP; a fleet: own-ca), 'own-ca', "
        f"{CLEARTEXT!r}, or {{'cert_file': PATH, 'key_file': PATH, 'ca_file': PATH}}",
    )
    return None


def _metrics(check: Checker, taken: set[int]) -> Metrics | None:
    enabled = check.boolean("litellm_metrics")
    port = check.integer("litellm_metrics_port", 1024, 65535)
    token_file = control_path(check, "litellm_metrics_token_file", check.data["litellm_metrics_token_file"])
    if port in taken:
        check.problem(
            "litellm_metrics_port",
            f"{port} is taken by another of the gateway's ports "
            f"({', '.join(str(p) for p in sorted(taken))}); choose another, e.g. 9400",
        )
    return Metrics(port, token_file or "") if enabled else None


def _fleet(check: Checker, bind: str, key: Any) -> Fleet | None:
    raw = check.data["litellm_fleet_address"]
    members_raw = check.data["litellm_fleet_members"]
    name = check.data["litellm_fleet_name"]
    if raw is None:
        for setting, value in (("litellm_fleet_name", name), ("litellm_fleet_members", members_raw)):
            if value:
                check.problem(
                    setting,
                    "is set, but litellm_fleet_address is None (no fleet); set the fleet's address too, or remove it",
                )
        return None
    address, _, prefix_text = raw.partition("/") if isinstance(raw, str) else ("", "", "")
    prefix = int(prefix_text) if prefix_text.isdigit() else (-1 if prefix_text else 32)
    if not plain_ip(address) or ipaddress.ip_address(address).version != 4 or not 8 <= prefix <= 32:
        check.problem(
            "litellm_fleet_address",
            f"{shown(raw)} is not an IPv4 address with an optional prefix, like "
            "'10.1.2.100' or '10.1.2.100/24': the floating address clients use",
        )
        return None
    if name is not None and not (isinstance(name, str) and HOSTNAME.fullmatch(name)):
        check.problem("litellm_fleet_name", f"{shown(name)} is not a DNS name; give the name clients use, or None")
        name = None
    interface = check.text(
        "litellm_fleet_interface",
        re.compile(r"[A-Za-z0-9_.@-]{1,15}"),
        "give the network interface name that holds litellm_bind_address, like 'eth0'",
    )
    router_id = check.integer("litellm_fleet_router_id", 1, 255)
    redis_port = check.integer("litellm_fleet_redis_port", 1024, 65535)
    sentinel_port = check.integer("litellm_fleet_sentinel_port", 1024, 65535)
    instance_ports = check.data["litellm_instance_ports"]
    taken = {check.data["litellm_port"], *(instance_ports if isinstance(instance_ports, (list, tuple)) else ())}
    if redis_port == sentinel_port or {redis_port, sentinel_port} & taken:
        check.problem(
            "litellm_fleet_redis_port",
            f"{redis_port} and litellm_fleet_sentinel_port {sentinel_port} must "
            "differ from each other and from the gateway's ports",
        )
    members: list[tuple[str, str]] = []
    if not isinstance(members_raw, (list, tuple)) or not all(
        isinstance(m, (list, tuple)) and len(m) == 2 and isinstance(m[0], str) and plain_ip(m[1]) for m in members_raw
    ):
        check.problem(
            "litellm_fleet_members",
            f"{shown(members_raw)}: list each gateway as [inventory name, "
            "bind address]; build the group with gateway_group(), which fills it",
        )
    else:
        members = [(str(m[0]), str(m[1])) for m in members_raw]
    if not members:
        check.problem(
            "litellm_fleet_members",
            "no gateways: build the group with gateway.inventory.gateway_group(), which lists the group's hosts here",
        )
    if bind in ("0.0.0.0", "::"):
        check.problem(
            "litellm_bind_address",
            f"{bind} in a fleet: the fleet's address takes the same port on every "
            "gateway; give each gateway its own address (host data)",
        )
    for member, member_address in members:
        if member_address in ("0.0.0.0", "::") or member_address == address:
            check.problem(
                "litellm_fleet_members",
                f"{member}: address {member_address} cannot be a gateway's own "
                "address in the fleet; set litellm_bind_address for it",
            )
    if len({a for _, a in members}) != len(members):
        check.problem("litellm_fleet_members", "two gateways share one address; give each its own litellm_bind_address")
    if key is None:
        check.problem(
            "litellm_master_key",
            "is unset, but a fleet serves one key on every gateway: give the fleet's "
            "master key (from outside git: environment, secret store)",
        )
    return Fleet(
        address=address,
        prefix=prefix,
        interface=interface,
        router_id=router_id,
        members=tuple(members),
        name=name,
        redis_port=redis_port,
        sentinel_port=sentinel_port,
    )


def merged_checker(data: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str) -> Checker:
    """`data` over `defaults`, in a checker that already names every unknown `prefix` setting (a typo)."""
    check = Checker({key: data.get(key, default) for key, default in defaults.items()})
    for key in sorted(k for k in data if k.startswith(prefix) and k not in defaults):
        check.problem(key, f"unknown setting; the settings are: {', '.join(defaults)}")
    return check


def as_declared(check: Checker, declared: tuple[Setting, ...], prefix: str) -> dict[str, Any]:
    """The settings taken as they are, each by its declared check: fields named without the prefix."""
    return {s.name.removeprefix(prefix): s.check(check, s.name) for s in declared if s.check}


def _release(check: Checker) -> dict[str, Any]:
    """What gets installed, and from where."""
    merged = check.data
    extra = merged["litellm_extra_requirements"]
    if not isinstance(extra, (list, tuple)) or not all(isinstance(r, str) and EXACT_PIN.fullmatch(r) for r in extra):
        check.problem(
            "litellm_extra_requirements", f"{shown(extra)}: every entry must be an exact pin like 'prisma==0.15.0'"
        )
        extra = []
    index_url = merged["litellm_pip_index_url"]
    if index_url is not None and not (isinstance(index_url, str) and INDEX_URL.fullmatch(index_url)):
        check.problem(
            "litellm_pip_index_url",
            f"{shown(index_url)} is not a plain http(s) URL of a package index, "
            "e.g. https://pypi.example.org/simple (no credentials, spaces or quotes), or None",
        )
        index_url = None
    wheel_cache = merged["litellm_wheel_cache"]
    if not isinstance(wheel_cache, str) or not wheel_cache or not wheel_cache.isprintable() or len(wheel_cache) > 4096:
        check.problem("litellm_wheel_cache", f"{shown(wheel_cache)} is not a path on the control machine")
        wheel_cache = DEFAULTS["litellm_wheel_cache"]
    return {
        "version": check.text("litellm_version", VERSION, "give an exact release such as '1.108.7'"),
        "extra_requirements": tuple(extra),
        "pip_index_url": index_url,
        "wheel_cache": wheel_cache,
    }


def _listening(check: Checker) -> dict[str, Any]:
    """Where the front and the instances listen."""
    merged = check.data
    bind = merged["litellm_bind_address"]
    if not plain_ip(bind):
        check.problem(
            "litellm_bind_address", f"{shown(bind)} is not an IP address; use 0.0.0.0 or one of the host's addresses"
        )
        bind = "0.0.0.0"
    port = check.integer("litellm_port", 1, 65535)
    instance_ports = merged["litellm_instance_ports"]
    if (
        not isinstance(instance_ports, (list, tuple))
        or len(instance_ports) != 2
        or any(isinstance(p, bool) or not isinstance(p, int) or not 1024 <= p <= 65535 for p in instance_ports)
        or len({port, *instance_ports}) != 3
    ):
        check.problem(
            "litellm_instance_ports",
            f"{shown(instance_ports)}: give two different ports from 1024 to 65535, "
            f"neither of them litellm_port ({port}), e.g. [4001, 4002]",
        )
        instance_ports = (4001, 4002)
    instance_address = merged["litellm_instance_address"]
    if not plain_ip(instance_address) or not ipaddress.ip_address(instance_address).is_loopback:
        check.problem(
            "litellm_instance_address",
            f"{shown(instance_address)} is not a loopback address; the instances "
            "must be reachable by the front only: use 127.0.0.1",
        )
        instance_address = "127.0.0.1"
    return {"bind_address": bind, "port": port, "instance_ports": tuple(instance_ports),
            "instance_address": instance_address}


def _proxy(check: Checker) -> dict[str, Any]:
    """How the proxy routes, retries and counts."""
    merged = check.data
    strategy = merged["litellm_routing_strategy"]
    if strategy not in ROUTING_STRATEGIES:
        check.problem("litellm_routing_strategy", f"{shown(strategy)} is not one of {', '.join(ROUTING_STRATEGIES)}")
    workers = merged["litellm_workers"]
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64):
        check.problem(
            "litellm_workers",
            f"{shown(workers)} is neither 'auto' (one per CPU, at most {AUTO_WORKERS_MAX}) "
            "nor a whole number from 1 to 64",
        )
        workers = 1
    return {
        "routing_strategy": strategy,
        "workers": workers,
    }


def _master_key(check: Checker) -> dict[str, Any]:
    key = check.data["litellm_master_key"]
    if key is not None:
        reason = weak_key_reason(key) if isinstance(key, str) else "it is not a string"
        if reason:
            # Never echo the key itself: it may be a real one in the wrong place.
            check.problem(
                "litellm_master_key",
                f"refused: {reason}. Generate one with: "
                "python3 -c 'import secrets; print(\"sk-\" + secrets.token_hex(32))', "
                "or leave it unset to have each host generate and keep its own",
            )
    previous = check.data["litellm_previous_master_key"]
    if previous is not None:
        if key is None:
            check.problem("litellm_previous_master_key", "a rotation needs the new key in litellm_master_key")
        elif previous == key:
            check.problem("litellm_previous_master_key", "is the master key itself: give the key being replaced")
        elif not isinstance(previous, str) or weak_key_reason(previous):
            # Never echo it: it is a real key.
            check.problem("litellm_previous_master_key", "is not a master key (sk- and at least 32 characters)")
    return {"master_key": key, "previous_master_key": previous}


def _account(check: Checker) -> dict[str, Any]:
    """The service's system account and the directories systemd makes for it."""
    user = check.text("litellm_user", ACCOUNT, "give a lower-case system user name")
    group = check.text("litellm_group", ACCOUNT, "give a lower-case group name")
    for setting, name in (("litellm_user", user), ("litellm_group", group)):
        if name in RESERVED_ACCOUNTS or name.startswith("systemd-"):
            check.problem(
                setting,
                f"{name!r} is an account of the system or of people; the deploy would renumber it "
                "and take its login away. Use an account of the gateway's own, e.g. 'litellm'",
            )
    paths = {k: check.path(k) for k in ("litellm_home", "litellm_venv_dir", "litellm_config_dir", "litellm_log_dir")}
    # systemd creates and opens these for the hardened service (StateDirectory=, LogsDirectory=).
    for setting, parent in (("litellm_home", "/var/lib/"), ("litellm_log_dir", "/var/log/")):
        if paths[setting] and not paths[setting].startswith(parent):
            check.problem(
                setting, f"{paths[setting]!r} must be under {parent} (systemd manages it for the hardened unit)"
            )
    return {
        "user": user,
        "group": group,
        "home": paths["litellm_home"],
        "venv_dir": paths["litellm_venv_dir"],
        "config_dir": paths["litellm_config_dir"],
        "log_dir": paths["litellm_log_dir"],
    }


def _preflight(check: Checker) -> dict[str, Any]:
    """What the checks before any change ask, and which an operator chose to skip."""
    merged = check.data
    nameservers = merged["litellm_dns_nameservers"]
    if nameservers is not None:
        if isinstance(nameservers, str):
            nameservers = [n.strip() for n in nameservers.split(",") if n.strip()]
        for server in nameservers if isinstance(nameservers, (list, tuple)) else [nameservers]:
            if not plain_ip(server):
                check.problem(
                    "litellm_dns_nameservers",
                    f"{shown(server)} is not an IP address; list nameserver addresses, or None for the system's",
                )
        nameservers = tuple(nameservers) if isinstance(nameservers, (list, tuple)) else None
    skip = merged["litellm_preflight_skip"]
    if isinstance(skip, str):
        skip = [part.strip() for part in skip.split(",") if part.strip()]
    if not isinstance(skip, (list, tuple, set, frozenset)) or not set(skip) <= set(PREFLIGHT_CLASSES):
        check.problem("litellm_preflight_skip", f"{shown(skip)}: only {', '.join(PREFLIGHT_CLASSES)} can be skipped")
        skip = []
    return {"dns_nameservers": nameservers, "preflight_skip": frozenset(skip)}


def _team_keys_file(check: Checker) -> dict[str, Any]:
    keys_file = check.data["litellm_team_keys_file"]
    if keys_file is not None:
        if not isinstance(keys_file, str) or not keys_file or not keys_file.isprintable() or len(keys_file) > 4096:
            check.problem(
                "litellm_team_keys_file", f"{shown(keys_file)} is not a path; give a file outside git, or None"
            )
            keys_file = None
        elif Path(keys_file).expanduser().resolve().is_relative_to(REPO):
            check.problem(
                "litellm_team_keys_file",
                f"{shown(keys_file)} is inside the repository; keep it outside git "
                "(e.g. ~/.config/litellm-gateway/team-keys.json)",
            )
    return {"team_keys_file": keys_file}


def _taken_ports(check: Checker, listening: dict[str, Any]) -> set[int]:
    """The ports the front, the instances and a fleet's Redis and Sentinel take: not the metrics'."""
    merged = check.data
    fleet = ((merged["litellm_fleet_redis_port"], merged["litellm_fleet_sentinel_port"])
             if merged["litellm_fleet_address"] is not None else ())
    return {p for p in (listening["port"], *listening["instance_ports"], *fleet) if isinstance(p, int)}


def load(data: Mapping[str, Any]) -> Settings:
    """Merge `data` over DEFAULTS and check every value; raise SettingsError listing all problems."""
    check = merged_checker(data, DEFAULTS, "litellm_")
    fields = as_declared(check, DECLARED, "litellm_")
    for group in (_release, _listening, _proxy, _master_key, _account, _preflight, _team_keys_file):
        fields |= group(check)
    models = _models(check)
    settings = Settings(
        **fields,
        models=tuple(models),
        backends=tuple(_backends(check, models)),
        tls=_tls(check),
        fleet=_fleet(check, fields["bind_address"], fields["master_key"]),
        metrics=_metrics(check, _taken_ports(check, fields)),
    )
    if check.problems:
        raise SettingsError(check.problems)
    return settings


def for_host(host: Any) -> Settings:
    """The checked settings of a pyinfra host (its inventory data over DEFAULTS)."""
    return load(host.data.dict())
