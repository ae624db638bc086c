"""The monitoring host: its settings, and what it watches, read from the inventory's gateways.

A host of the inventory's monitoring group (gateway.inventory.monitoring_group) runs Prometheus,
Alertmanager and the blackbox exporter from the distribution's packages, under units of our own;
every host the deploy manages runs the node exporter once the inventory has a monitoring host.
What is watched is never listed twice: the gateways are the inventory's gateway hosts, and their
backends, models, ports, TLS and scrape token are those hosts' own settings.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from gateway import control_secrets, tls
from gateway.services import front, metrics
from gateway.settings import (
    HOSTNAME,
    Checker,
    Setting,
    Settings,
    SettingsError,
    Whole,
    as_declared,
    control_path,
    merged_checker,
    plain_ip,
    shown,
)

CONFIG_DIR = "/etc/litellm-monitoring"
STATE_DIR = "litellm-monitoring"  # under /var/lib (the units' StateDirectory=)
PROMETHEUS = "litellm-prometheus.service"
ALERTMANAGER = "litellm-alertmanager.service"
BLACKBOX = "litellm-blackbox.service"
NODE_EXPORTER = "litellm-node-exporter.service"
NODE_EXPORTER_PORT = 9100  # the node exporter's usual port, on every managed host
# The distribution's package of each service, and the service we run instead of its own.
PACKAGES = {"prometheus": PROMETHEUS, "prometheus-alertmanager": ALERTMANAGER,
            "prometheus-blackbox-exporter": BLACKBOX}
NODE_PACKAGE = {"prometheus-node-exporter": NODE_EXPORTER}
SERVICE_USER = "prometheus"  # made by the packages; every one of these services runs as it

DECLARED: tuple[Setting, ...] = (
    # Where Prometheus, Alertmanager and the blackbox exporter listen: every interface, or one of
    # the host's addresses. Each asks for a login (user "operator", the password file below).
    Setting(
        "monitoring_bind_address",
        "0.0.0.0",
        "where Prometheus, Alertmanager and the blackbox exporter listen (each asks for a login)",
    ),
    # The operators' password for Prometheus and Alertmanager (made once on the control machine,
    # 0600; the hosts hold only bcrypt hashes of it and of Prometheus' own password derived from it).
    Setting(
        "monitoring_password_file",
        "~/.local/share/litellm-gateway/monitoring.password",
        "the operators' password (user operator) on the control machine, made once, 0600",
    ),
    # None: Prometheus and Alertmanager over plain HTTP (reach them over a management network).
    # "own-ca": HTTPS, with a certificate from the own CA the watched gateways use (litellm_tls own-ca).
    Setting("monitoring_tls", None, 'None: plain HTTP; "own-ca": HTTPS from the watched gateways\' own CA'),
    Setting("monitoring_prometheus_port", 9090, "Prometheus", check=Whole(1024, 65535)),
    Setting("monitoring_alertmanager_port", 9093, "Alertmanager", check=Whole(1024, 65535)),
    Setting("monitoring_blackbox_port", 9115, "the blackbox exporter (Prometheus' probes)", check=Whole(1024, 65535)),
    Setting("monitoring_scrape_interval", 15, "seconds between scrapes and rule evaluations", check=Whole(1, 3600)),
    Setting(
        "monitoring_retention", "30d", "how long Prometheus keeps samples, like 30d or 12w"
    ),  # how long Prometheus keeps samples (a number and s, m, h, d, w or y)
    # Who is woken: {"webhook_url": "https://..."} (Alertmanager's webhook JSON is POSTed there), or
    # {"email": "oncall@example.org", "smarthost": "mail.example.org:587", "from": "alertmanager@example.org"}
    # (optionally "require_tls": False for a relay without STARTTLS).
    Setting(
        "monitoring_receiver", None, "who is woken: {webhook_url} or {email, smarthost, from[, require_tls]} (required)"
    ),
    # When alerts fire; see the README's Alerts table for what each means and what to do.
    Setting(
        "monitoring_thresholds",
        {},
        "when alerts fire: down_for, error_ratio, p95_latency, limit_hits, cold_routes, disk_free, "
        "memory_available, certificate_days",
    ),
)
DEFAULTS: dict[str, Any] = {s.name: s.default for s in DECLARED}
THRESHOLDS: dict[str, float] = {
    "down_for": 120,  # seconds a gateway, backend, model or host is down before it alerts
    "error_ratio": 0.05,  # failed / all requests of a model over 5 minutes (429s are the clients')
    "p95_latency": 30,  # seconds, a model's 95th percentile over 5 minutes, for 10 minutes
    "limit_hits": 20,  # a team's requests refused by its limits (429) in 15 minutes
    # requests a minute residency routing sent to a backend not holding their model (each one a load
    # there, most of them an eviction), for 10 minutes
    "cold_routes": 6,
    "disk_free": 0.10,  # fraction of a file system still free
    "memory_available": 0.10,  # fraction of memory still available
    "certificate_days": 14,  # days before a gateway's certificate expires
}
# "Ready" as the hosts' own probe means it (on_host/readiness.py PATH and READY; the host side cannot
# import this package, tests/test_monitoring.py holds them equal), at the front's readiness route.
READINESS = front.READINESS_PATH
READY = ("healthy", "connected")
RETENTION = re.compile(r"[1-9][0-9]{0,5}[smhdwy]")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}")


@dataclass(frozen=True)
class Receiver:
    webhook_url: str | None = None
    email: str | None = None
    smarthost: str | None = None
    sender: str | None = None
    require_tls: bool = True


@dataclass(frozen=True)
class Thresholds:
    down_for: int
    error_ratio: float
    p95_latency: float
    limit_hits: int
    cold_routes: int
    disk_free: float
    memory_available: float
    certificate_days: int


@dataclass(frozen=True)
class MonitoringSettings:
    bind_address: str
    prometheus_port: int
    alertmanager_port: int
    blackbox_port: int
    scrape_interval: int
    retention: str
    receiver: Receiver
    thresholds: Thresholds
    password_file: str
    tls: bool  # HTTPS from the gateways' own CA

    def password(self, issue: bool = True) -> str | None:
        """The operators' password, made on first use when `issue` (None: not made yet)."""
        return read_password(self.password_file, issue)

    def urls(self, host_name: str) -> dict[str, str]:
        """Where people and the fab tasks reach Prometheus and Alertmanager on this host."""
        address = reach_address(host_name, self.bind_address)
        host = f"[{address}]" if ":" in address else address
        return {
            "prometheus_url": f"{self.scheme}://{host}:{self.prometheus_port}",
            "alertmanager_url": f"{self.scheme}://{host}:{self.alertmanager_port}",
        }

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def names(self, host_name: str) -> tuple[str, ...]:
        """What its certificate names: its inventory name, its address, and where its services reach each other."""
        return tls.gateway_names(host_name, self.bind_address, (self.local_address,))

    @property
    def local_address(self) -> str:
        """Where the services reach each other on the host."""
        return "127.0.0.1" if self.bind_address == "0.0.0.0" else self.bind_address


def _receiver(check: Checker) -> Receiver:
    raw = check.data["monitoring_receiver"]
    example = (
        'give {"webhook_url": "https://alerts.example.org/hook"} or {"email": "oncall@example.org", '
        '"smarthost": "mail.example.org:587", "from": "alertmanager@example.org"}'
    )
    if not isinstance(raw, Mapping) or not raw:
        check.problem("monitoring_receiver", f"{shown(raw)}: nobody would be woken by an alert; {example}")
        return Receiver()
    unknown = set(raw) - {"webhook_url", "email", "smarthost", "from", "require_tls"}
    if unknown:
        check.problem("monitoring_receiver", f"unknown keys {sorted(unknown)}; {example}")
    if "webhook_url" in raw:
        url = raw["webhook_url"]
        parts = urlsplit(url) if isinstance(url, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or not url.isprintable()
            or any(c in url for c in " \"'\\")
        ):
            check.problem("monitoring_receiver.webhook_url", f"{shown(url)} is not an http(s) URL")
        return Receiver(webhook_url=url)
    email, smarthost, sender = raw.get("email"), raw.get("smarthost"), raw.get("from")
    if not (isinstance(email, str) and EMAIL.fullmatch(email)):
        check.problem("monitoring_receiver.email", f"{shown(email)} is not an e-mail address; {example}")
    if not (isinstance(sender, str) and EMAIL.fullmatch(sender)):
        check.problem("monitoring_receiver.from", f"{shown(sender)} is not an e-mail address to send from")
    host, _, port = (smarthost or "").rpartition(":") if isinstance(smarthost, str) else ("", "", "")
    if not (HOSTNAME.fullmatch(host) or plain_ip(host)) or not port.isdigit() or not 1 <= int(port) <= 65535:
        check.problem("monitoring_receiver.smarthost", f"{shown(smarthost)} is not HOST:PORT of a mail relay")
    require_tls = raw.get("require_tls", True)
    if not isinstance(require_tls, bool):
        check.problem("monitoring_receiver.require_tls", f"{shown(require_tls)} is not True or False")
    return Receiver(email=email, smarthost=smarthost, sender=sender, require_tls=require_tls is not False)


def _thresholds(check: Checker) -> Thresholds:
    raw = check.data["monitoring_thresholds"]
    if not isinstance(raw, Mapping):
        check.problem("monitoring_thresholds", f"{shown(raw)} is not a mapping like {{'error_ratio': 0.1}}")
        raw = {}
    unknown = set(raw) - set(THRESHOLDS)
    if unknown:
        check.problem("monitoring_thresholds", f"unknown keys {sorted(unknown)}; allowed: {', '.join(THRESHOLDS)}")
    values = {**THRESHOLDS, **{k: v for k, v in raw.items() if k in THRESHOLDS}}
    for key in ("error_ratio", "disk_free", "memory_available"):
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            check.problem(
                f"monitoring_thresholds.{key}", f"{shown(value)} is not a fraction between 0 and 1, like 0.05"
            )
            values[key] = THRESHOLDS[key]
    for key, low, high in (("down_for", 1, 86400), ("limit_hits", 1, 1_000_000), ("cold_routes", 1, 100_000),
                            ("certificate_days", 1, 365)):
        values[key] = check.integer(key, low, high, value=values[key], where=f"monitoring_thresholds.{key}")
    p95 = values["p95_latency"]
    if isinstance(p95, bool) or not isinstance(p95, (int, float)) or not 0 < p95 <= 3600:
        check.problem("monitoring_thresholds.p95_latency", f"{shown(p95)} is not a number of seconds from 0 to 3600")
        values["p95_latency"] = THRESHOLDS["p95_latency"]
    return Thresholds(**values)


def load_monitoring(data: Mapping[str, Any]) -> MonitoringSettings:
    """Merge `data` over DEFAULTS and check every value; raise SettingsError listing all problems."""
    check = merged_checker(data, DEFAULTS, "monitoring_")
    merged = check.data
    bind = merged["monitoring_bind_address"]
    if not plain_ip(bind):
        check.problem(
            "monitoring_bind_address", f"{shown(bind)} is not an IP address; use 0.0.0.0 or one of the host's addresses"
        )
    declared = as_declared(check, DECLARED, "monitoring_")
    ports = {key: declared[key] for key in ("prometheus_port", "alertmanager_port", "blackbox_port")}
    if len(set(ports.values())) < len(ports) or NODE_EXPORTER_PORT in ports.values():
        check.problem(
            "monitoring ports",
            f"{sorted(ports.values())} and the node exporter's {NODE_EXPORTER_PORT} "
            "must all differ; choose other ports",
        )
    retention = merged["monitoring_retention"]
    if not isinstance(retention, str) or not RETENTION.fullmatch(retention):
        check.problem("monitoring_retention", f"{shown(retention)} is not a duration like '30d' or '12w'")
    settings = MonitoringSettings(
        **declared,
        bind_address=bind if plain_ip(bind) else "0.0.0.0",
        retention=retention if isinstance(retention, str) else "",
        receiver=_receiver(check),
        thresholds=_thresholds(check),
        password_file=control_path(check, "monitoring_password_file", merged["monitoring_password_file"]) or "",
        tls=merged["monitoring_tls"] == "own-ca",
    )
    if merged["monitoring_tls"] not in (None, "own-ca"):
        check.problem(
            "monitoring_tls",
            f"{shown(merged['monitoring_tls'])} is neither None (plain HTTP) nor 'own-ca' "
            "(HTTPS from the gateways' own CA)",
        )
    if check.problems:
        raise SettingsError(check.problems)
    return settings


# What is watched ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A gateway as the monitoring host reaches it."""

    name: str  # its inventory name
    address: str  # its bind address, or its name when it serves on every interface
    scheme: str
    port: int
    metrics_port: int | None
    instance_ports: tuple[int, ...]
    fleet: str | None  # the fleet's name or address, when it is a fleet gateway

    def url(self, port: int) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{port}"


@dataclass(frozen=True)
class Probe:
    """One Ollama backend and the tags the inventory assigns to it."""

    name: str
    url: str  # Ollama's root URL
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Watch:
    """Everything the monitoring host's config is rendered from."""

    gateways: tuple[Target, ...]
    fleets: tuple[str, ...]  # readiness URLs of the fleets' floating addresses
    backends: tuple[Probe, ...]
    hosts: tuple[tuple[str, str], ...]  # (inventory name, address) of every host with a node exporter
    token: str | None  # the gateways' scrape token
    ca_bundle: str | None  # the CAs the gateways' certificates are verified with
    own_ca_dirs: tuple[str, ...] = ()  # the own CAs (litellm_tls_ca_dir) of the gateways that use one

    def own_ca(self) -> tls.OwnCA:
        """The gateways' own CA, which issues the monitoring host's certificate (monitoring_tls: own-ca)."""
        if len(self.own_ca_dirs) != 1:
            found = ", ".join(self.own_ca_dirs) or "none"
            raise SettingsError(
                [
                    f"monitoring_tls: 'own-ca' takes the certificate from the own CA of the gateways it "
                    f"watches; they use {found}: give the gateways litellm_tls 'own-ca' with one "
                    "litellm_tls_ca_dir, or set monitoring_tls to None"
                ]
            )
        return tls.OwnCA(self.own_ca_dirs[0])

    ready_pattern: ClassVar[str] = (
        '"status":\\s*"(' + "|".join(READY) + ')"'
    )  # the same "ready" as the host's own probe

    @staticmethod
    def model_module(tag: str) -> str:
        return "ollama_has_" + re.sub(r"[^A-Za-z0-9_]", "_", tag)

    @staticmethod
    def tag_pattern(tag: str) -> str:
        """Matches the tag's entry in /api/tags, written for a YAML single-quoted string."""
        return '"name":\\s*"' + re.escape(tag).replace("'", "''") + '"'


def reach_address(name: str, bind_address: str) -> str:
    return name if bind_address in ("0.0.0.0", "::") else bind_address


def watch(gateways: Iterable[tuple[str, Settings]], monitors: Iterable[tuple[str, str]], issue: bool = True) -> Watch:
    """What the monitoring host watches: these (name, settings) gateways, their backends, and every host
    (gateways and monitoring hosts, (name, address)) with a node exporter."""
    gateways = list(gateways)
    targets, fleets, backends, cas, tokens, own = [], [], {}, [], set(), []
    for name, s in gateways:
        fleet = s.fleet.name or s.fleet.address if s.fleet else None
        targets.append(
            Target(
                name,
                reach_address(name, s.bind_address),
                s.scheme,
                s.port,
                s.metrics.port if s.metrics else None,
                s.instance_ports,
                fleet,
            )
        )
        if s.fleet:
            url = f"{s.scheme}://{fleet}:{s.port}{READINESS}"
            if url not in fleets:
                fleets.append(url)
        for backend in s.backends:
            known = backends.setdefault(backend.api_base, (backend.name, set()))
            known[1].update(m.tag for m in s.models if m.name in backend.models)
        if s.tls:
            if s.tls.own_ca and s.tls.ca_dir not in own:
                own.append(s.tls.ca_dir)
            served = tls.material(s, name, issue)
            if served and served.ca_file not in cas:
                cas.append(served.ca_file)
        if s.metrics:
            token = metrics.ensure_token(s) if issue else metrics.read_token(s)
            if token:
                tokens.add(token)
    if len(tokens) > 1:
        raise SettingsError(
            [
                "litellm_metrics_token_file: the gateways name different token files; the monitoring "
                "host scrapes them all with one token: give every gateway the same file"
            ]
        )
    bundle = "".join(Path(path).expanduser().read_text() for path in cas) or None
    hosts = [(name, reach_address(name, s.bind_address)) for name, s in gateways]
    hosts += [h for h in monitors if h[0] not in {n for n, _ in hosts}]
    return Watch(
        tuple(targets),
        tuple(fleets),
        tuple(Probe(name, url, tuple(sorted(tags))) for url, (name, tags) in sorted(backends.items())),
        tuple(hosts),
        next(iter(tokens), None),
        bundle,
        tuple(own),
    )


def read_password(file: str, issue: bool = True) -> str | None:
    """The password in `file` on the control machine, made on first use when `issue` (None: not made yet)."""
    path = Path(file).expanduser()
    return control_secrets.ensure(path) if issue else control_secrets.read(path)
