"""Every file the deploy puts on a monitoring host, and the node exporter's unit on every managed host.

The same rows as the gateway's (gateway.services.base.ManagedFile): installed staged and checked by the
service's own tool (promtool, amtool, the blackbox exporter's --config.check) before they replace
the live file; a changed config reloads its service, a changed unit restarts it.
"""
from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from gateway.monitoring import auth
from gateway.monitoring.auth import OPERATOR, SCRAPER, scraper_password
from gateway.monitoring.settings import (
    ALERTMANAGER,
    BLACKBOX,
    CONFIG_DIR,
    NODE_EXPORTER,
    NODE_EXPORTER_PORT,
    PROMETHEUS,
    READINESS,
    SERVICE_USER,
    STATE_DIR,
    MonitoringSettings,
    Watch,
)
from gateway.render import render
from gateway.services.base import UNIT_DIR, Change, ManagedFile, Service
from gateway.services.metrics import MetricsView


@dataclass(frozen=True)
class Paths:
    config: str = f"{CONFIG_DIR}/prometheus.yml"
    rules: str = f"{CONFIG_DIR}/alert-rules.yml"
    alertmanager: str = f"{CONFIG_DIR}/alertmanager.yml"
    blackbox: str = f"{CONFIG_DIR}/blackbox.yml"
    token: str = f"{CONFIG_DIR}/metrics.token"
    ca_bundle: str = f"{CONFIG_DIR}/gateways-ca.crt"
    web_config: str = f"{CONFIG_DIR}/web.yml"  # who may log in to the three services
    scraper_password: str = f"{CONFIG_DIR}/prometheus.password"  # Prometheus' own login
    node_web_config: str = "/etc/litellm-node-exporter/web.yml"  # on every managed host: Prometheus only
    tls_cert: str = f"{CONFIG_DIR}/tls.crt"  # monitoring_tls: the services' certificate chain
    tls_key: str = f"{CONFIG_DIR}/tls.key"


PATHS = Paths()


@dataclass(frozen=True)
class Unit:
    """One service the monitoring units template renders."""

    name: str
    description: str
    documentation: str
    exec_start: str
    does: str = ""  # what it is for, in the deploy's operation names
    user: str = SERVICE_USER
    reloads: bool = True  # SIGHUP re-reads its config
    state_directory: str | None = None
    reads_host: bool = False  # sees the host's /proc and file systems (the node exporter)
    memory_max: str = "256M"  # systemd's cap: a runaway is restarted, the host is not starved
    tasks_max: int = 64
    # HTTPS: a fingerprint of the certificate served. The services set up TLS when they start, so a
    # new certificate, or TLS turned on or off, changes the unit and restarts them.
    certificate: str | None = None

    @property
    def service(self) -> Service:
        """As the deploy brings it up: a changed config is re-read (SIGHUP) where it can be, a changed
        unit restarts it."""
        return Service(self.name, self.does, Change.RELOAD_CONFIG if self.reloads else Change.RESTART)


def units(m: MonitoringSettings, host_name: str, certificate: str | None = None) -> list[Unit]:
    """Prometheus, Alertmanager and the blackbox exporter, each on the monitoring bind address
    (`certificate`: the fingerprint of the one they serve with monitoring_tls)."""
    bind = m.bind_address
    address = host_name if bind == "0.0.0.0" else bind
    return [
        Unit(PROMETHEUS, f"Prometheus of the LiteLLM gateways (port {m.prometheus_port})", "man:prometheus(1)",
             f"/usr/bin/prometheus --config.file={PATHS.config} --storage.tsdb.path=/var/lib/{STATE_DIR}/prometheus "
             f"--storage.tsdb.retention.time={m.retention} --web.listen-address={bind}:{m.prometheus_port} "
             f"--web.external-url={m.scheme}://{address}:{m.prometheus_port}/ --web.config.file={PATHS.web_config}",
             "scrapes the gateways and evaluates the alert rules",
             state_directory=f"{STATE_DIR}/prometheus", memory_max="2G", tasks_max=256, certificate=certificate),
        Unit(ALERTMANAGER, f"Alertmanager of the LiteLLM gateways (port {m.alertmanager_port})",
             "man:prometheus-alertmanager(1)",
             f"/usr/bin/prometheus-alertmanager --config.file={PATHS.alertmanager} "
             f"--storage.path=/var/lib/{STATE_DIR}/alertmanager --web.listen-address={bind}:{m.alertmanager_port} "
             f"--web.external-url={m.scheme}://{address}:{m.alertmanager_port}/ --cluster.listen-address= "
             f"--web.config.file={PATHS.web_config}", "sends the alerts",
             state_directory=f"{STATE_DIR}/alertmanager", certificate=certificate),
        Unit(BLACKBOX, f"Blackbox exporter probing the LiteLLM gateways and backends (port {m.blackbox_port})",
             "man:prometheus-blackbox-exporter(1)",
             f"/usr/bin/prometheus-blackbox-exporter --config.file={PATHS.blackbox} "
             f"--web.listen-address={m.local_address}:{m.blackbox_port} --web.config.file={PATHS.web_config}",
             "probes the gateways and their backends from outside", certificate=certificate),
    ]


def node_exporter_unit(address: str) -> Unit:
    """The node exporter of a managed host, on `address` (0.0.0.0: every interface)."""
    return Unit(NODE_EXPORTER, f"Node exporter for the LiteLLM gateways' monitoring (port {NODE_EXPORTER_PORT})",
                "man:prometheus-node-exporter(1)",
                f"/usr/bin/prometheus-node-exporter --web.listen-address={address}:{NODE_EXPORTER_PORT} "
                f"--web.config.file={PATHS.node_web_config} "
                # No timex collector: it needs adjtimex, which the unit's system call filter refuses.
                "--no-collector.timex --collector.systemd "
                "--collector.systemd.unit-include=(litellm.*|ollama)\\.service",
                "reports the host's disks, memory, CPU and services", reloads=False, reads_host=True)


def _unit_file(unit: Unit, host_name: str) -> ManagedFile:
    return ManagedFile(f"{UNIT_DIR}/{unit.name}", "templates/monitoring.service.j2", "root", "root", "644",
                       "is installed, hardened",
                       render("monitoring.service.j2", host_name=host_name, metrics=MetricsView(), unit=unit).encode(),
                       restarts=(unit.name,))


def _web_config(path: str, users: dict[str, str], restarts: tuple[str, ...], validate: str | None,
                https: bool = False) -> ManagedFile:
    """Who may log in, and with `https` the certificate served (the services read it at every request)."""
    tls_files = (PATHS.tls_cert, PATHS.tls_key) if https else ()
    return ManagedFile(path, "gateway/monitoring/auth.py", "root", SERVICE_USER, "640",
                       f"lets only {' and '.join(sorted(users))} in (basic auth, bcrypt{', HTTPS' if https else ''})",
                       auth.web_config(users, *tls_files).encode(), validate=validate, restarts=restarts)


def node_exporter_files(address: str, host_name: str, password: str) -> list[ManagedFile]:
    """The node exporter's login (Prometheus only, from the monitoring `password`) and its unit."""
    return [_web_config(PATHS.node_web_config, {SCRAPER: scraper_password(password)}, (NODE_EXPORTER,),
                        None),  # promtool is on the monitoring host only
            _unit_file(node_exporter_unit(address), host_name)]


def monitoring_files(m: MonitoringSettings, w: Watch, host_name: str, password: str) -> list[ManagedFile]:
    """The monitoring host's table, in the order the deploy installs it: what a config reads first.
    `password`: the operators' (MonitoringSettings.password())."""

    def config(path: str, template: str, wanted: str, service: str, validate: str, mode: str = "640") -> ManagedFile:
        content = render(template, host_name=host_name, metrics=MetricsView(), m=m, w=w, paths=PATHS,
                         node_port=NODE_EXPORTER_PORT,
                                     readiness=READINESS, scraper=SCRAPER)
        # Read by the services' user, changed by root only; a change is a reload (SIGHUP), not a restart.
        return ManagedFile(path, f"templates/{template}", "root", SERVICE_USER, mode, wanted, content.encode(),
                           validate=validate, restarts=(service,))

    scraper = scraper_password(password)
    rows, certificate = [], None
    if m.tls:  # before the web config, whose check reads them
        served = w.own_ca().material(host_name, m.names(host_name))
        certificate = hashlib.sha256(served.chain).hexdigest()[:12]
        rows += [ManagedFile(PATHS.tls_cert, "monitoring_tls (the gateways' own CA)", "root", SERVICE_USER, "640",
                             f"holds the certificate for {', '.join(served.names)}", served.chain,
                             restarts=(PROMETHEUS, ALERTMANAGER, BLACKBOX)),
                 ManagedFile(PATHS.tls_key, "monitoring_tls (the certificate's key)", "root", SERVICE_USER, "640",
                             "holds the certificate's key", served.key, restarts=(PROMETHEUS, ALERTMANAGER, BLACKBOX))]
    rows += [_web_config(PATHS.web_config, {OPERATOR: password, SCRAPER: scraper},
                         (PROMETHEUS, ALERTMANAGER, BLACKBOX), "/usr/bin/promtool check web-config {path}", m.tls),
            ManagedFile(PATHS.scraper_password, "monitoring_password_file (Prometheus' own, derived)", "root",
                        SERVICE_USER, "640", "holds Prometheus' login to the exporters and Alertmanager",
                        (scraper + "\n").encode(), restarts=(PROMETHEUS,))]
    if w.token:
        rows.append(ManagedFile(PATHS.token, "litellm_metrics_token_file", "root", SERVICE_USER, "640",
                                "holds the gateways' scrape token, for Prometheus only", (w.token + "\n").encode(),
                                restarts=(PROMETHEUS,)))
    if w.ca_bundle:
        rows.append(ManagedFile(PATHS.ca_bundle, "litellm_tls (the CAs of the gateways' certificates)", "root", "root",
                                "644", "holds the CAs the gateways' certificates are verified with",
                                w.ca_bundle.encode(), restarts=(PROMETHEUS, BLACKBOX)))
    rows += [
        config(PATHS.rules, "alert-rules.yml.j2", "holds the alert rules, checked by promtool", PROMETHEUS,
               "/usr/bin/promtool check rules {path}"),
        config(PATHS.config, "prometheus.yml.j2",
               f"scrapes {len(w.gateways)} gateway(s), probes {len(w.backends)} backend(s), checked by promtool",
               PROMETHEUS, "/usr/bin/promtool check config {path}"),
        config(PATHS.blackbox, "blackbox.yml.j2", "holds the probes' modules, checked by the blackbox exporter",
               BLACKBOX, "/usr/bin/prometheus-blackbox-exporter --config.check --config.file={path}"),
        config(PATHS.alertmanager, "alertmanager.yml.j2",
               "sends every alert to the operators' receiver, checked by amtool",
               ALERTMANAGER, "/usr/bin/amtool check-config {path}"),
        *(_unit_file(unit, host_name) for unit in units(m, host_name, certificate)),
    ]
    return rows


def ready_urls(m: MonitoringSettings) -> list[str]:
    """What answers 200 once the monitoring host's services are up and have read their configs."""
    base = f"{m.scheme}://{m.local_address}"
    return [f"{base}:{m.prometheus_port}/-/ready", f"{base}:{m.alertmanager_port}/-/ready",
            f"{base}:{m.blackbox_port}/-/healthy"]


def ready_command(m: MonitoringSettings, timeout: int = 60) -> str:
    """Waits (with the host's python3, as root, logged in as Prometheus) until every ready_urls() answers 200;
    fails naming the one that does not."""
    script = (
        "import base64, ssl, sys, time, urllib.request\n"
        f"login = '{SCRAPER}:' + open('{PATHS.scraper_password}').read().strip()\n"
        f"context = ssl.create_default_context(cafile='{PATHS.ca_bundle}') if {m.tls} else None\n"
        "auth = {'Authorization': 'Basic ' + base64.b64encode(login.encode()).decode()}\n"
        f"deadline = time.monotonic() + {timeout}\n"
        "for url in sys.argv[1:]:\n"
        "    while True:\n"
        "        try:\n"
        "            urllib.request.urlopen(urllib.request.Request(url, headers=auth), timeout=3, "
        "context=context).read(); break\n"
        "        except OSError as error:\n"
        "            if time.monotonic() > deadline:\n"
        f"                sys.exit(f'{{url}} does not answer after {timeout} s: {{error}}')\n"
        "            time.sleep(1)\n"
    )
    return " ".join(["python3", "-c", shlex.quote(script), *ready_urls(m)])
