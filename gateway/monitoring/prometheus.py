"""Reading the monitoring host's Prometheus and Alertmanager from the control machine (fab usage,
fab status): which monitoring hosts the inventory has, their URLs, and their HTTP APIs."""
from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from gateway.inventory import is_gateway, is_monitoring
from gateway.inventory_reader import host_data
from gateway.monitoring.auth import OPERATOR, authorization
from gateway.monitoring.settings import load_monitoring, watch
from gateway.settings import load


class PrometheusError(RuntimeError):
    """Prometheus or Alertmanager could not answer; the message names the URL."""


@dataclass(frozen=True)
class Watcher:
    """One monitoring host, as the control machine reaches it."""

    name: str
    prometheus_url: str
    alertmanager_url: str
    password: str | None = None  # the operators' (monitoring_password_file); None: not made yet
    ca_file: str | None = None  # with monitoring_tls: the gateways' own CA, which issued its certificate
    password_file: str = ""  # where `password` came from, for the message when it is refused
    timeout: float = 10

    def _get(self, url: str) -> Any:
        headers = {"Authorization": authorization(OPERATOR, self.password)} if self.password else {}
        context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=self.timeout,
                                        context=context) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            if error.code == 401:
                held = "holds another password" if self.password else "is missing"
                raise PrometheusError(
                    f"{url.split('?')[0]}: the login was refused: monitoring_password_file ({self.password_file}) "
                    f"{held} on this machine; copy it from the machine that deployed the monitoring host, "
                    "or deploy the monitoring host from here") from None
            raise PrometheusError(f"{url.split('?')[0]}: {error}") from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise PrometheusError(f"{url.split('?')[0]}: {getattr(error, 'reason', None) or error}") from None

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        """An instant query's result (a list of {metric, value} or {metric, values}), now or `at` (Unix time)."""
        params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
        body = self._get(f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode(params))
        if body.get("status") != "success":
            raise PrometheusError(f"{self.prometheus_url}: {body.get('error', body)}")
        return body["data"]["result"]

    def alerts(self) -> list[dict]:
        """The alerts firing now, as Prometheus sees them (pending ones left out)."""
        body = self._get(f"{self.prometheus_url}/api/v1/alerts")
        return [a for a in body["data"]["alerts"] if a["state"] == "firing"]

    def graph_url(self, promql: str, window: str) -> str:
        """A link to Prometheus' graph of `promql` over the last `window` (the browser asks for the login)."""
        return f"{self.prometheus_url}/graph?" + urllib.parse.urlencode(
            {"g0.expr": promql, "g0.range_input": window, "g0.tab": "0"})


def watchers(inventory: str) -> list[Watcher]:
    """The inventory's monitoring hosts (none: the inventory has no monitoring group)."""
    found = []
    everyone = host_data(inventory)
    for name, data in everyone.items():
        if is_monitoring(data):
            m = load_monitoring(data)
            urls = m.urls(name)
            ca_file = None
            if m.tls:
                gateways = [(n, load(d)) for n, d in everyone.items() if is_gateway(d)]
                ca_file = str(watch(gateways, [], issue=False).own_ca().cert_file)
            found.append(Watcher(name, urls["prometheus_url"], urls["alertmanager_url"], m.password(issue=False),
                                 ca_file, m.password_file))
    return found
