"""Who may read the monitoring host's Prometheus, Alertmanager and blackbox exporter, and every node exporter.

Each serves behind basic auth, the services' own `--web.config.file` with bcrypt hashes: operators
log in as OPERATOR with the monitoring password (made once on the control machine, like the scrape
token); Prometheus itself is SCRAPER, with a password derived from the monitoring password, the only
one the node and blackbox exporters accept. A hash's salt is derived from its password too, so the
same password renders the same file and a second deploy changes nothing.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any

import bcrypt

from gateway.inventory import is_monitoring
from gateway.monitoring.settings import load_monitoring, read_password
from gateway.settings import SettingsError

OPERATOR = "operator"  # the people: fab status, fab usage, the web UIs
SCRAPER = "prometheus"  # Prometheus: the exporters, Alertmanager, the readiness wait
COST = 10  # bcrypt's work factor: ~50 ms a check; the services keep checked credentials in a cache
_STANDARD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _derived(password: str, purpose: str) -> bytes:
    return hmac.new(password.encode(), purpose.encode(), hashlib.sha256).digest()


def scraper_password(password: str) -> str:
    """Prometheus' own password, from the monitoring password: rotating that one rotates this one."""
    return _derived(password, "litellm-monitoring scraper").hex()


def bcrypt_hash(password: str, user: str) -> str:
    """bcrypt of `password`, salted from the password and `user`: the same input, the same hash."""
    salt = base64.b64encode(_derived(password, f"litellm-monitoring salt {user}")[:16]).rstrip(b"=")
    salt = salt.translate(bytes.maketrans(_STANDARD, _BCRYPT))
    return bcrypt.hashpw(password.encode(), b"$2b$%02d$" % COST + salt).decode()


def web_config(users: Mapping[str, str], cert_file: str | None = None, key_file: str | None = None) -> str:
    """The exporter toolkit's web config: these users (name: password) and nobody else; HTTPS only
    with this certificate and key when given."""
    lines = ["# Who may read this service: basic auth, bcrypt (managed by the gateway deploy: edits here are",
             "# overwritten). The passwords themselves are never on this host's disk except Prometheus' own.",
             "basic_auth_users:"]
    lines += [f"  {user}: '{bcrypt_hash(password, user)}'" for user, password in sorted(users.items())]
    if cert_file and key_file:
        lines += ["tls_server_config:", f"  cert_file: {cert_file}", f"  key_file: {key_file}"]
    return "\n".join(lines) + "\n"


def authorization(user: str, password: str) -> str:
    """The Authorization header of a request as `user`."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def monitoring_password(hosts_data: Iterable[Mapping[str, Any]], issue: bool = True) -> str | None:
    """The operators' password of the inventory's monitoring hosts (None: none, or not made yet).
    Every node exporter lets in the Prometheus of each: they share one password file."""
    files = {load_monitoring(data).password_file for data in hosts_data if is_monitoring(data)}
    if len(files) > 1:
        raise SettingsError([f"monitoring_password_file: the monitoring hosts name different files {sorted(files)}; "
                             "every node exporter lets one Prometheus login in: give every monitoring host the "
                             "same file"])
    return read_password(files.pop(), issue) if files else None

