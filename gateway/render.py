"""The whole files the deploy manages, rendered from templates/ and the typed settings.

Deterministic (no timestamps, no random values): the same settings always give the same bytes,
so pyinfra's checksum comparison is the whole change detection, and `fab status` can tell drift.
"""
from __future__ import annotations

from pathlib import Path

import jinja2

from gateway.commands import HOOK, TEAM_KEYS
from gateway.front import Front
from gateway.metrics import MetricsView
from gateway.settings import Settings
from gateway.shared_limits import Limits
from gateway.vrrp import Vrrp

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def render(template: str, settings: Settings, host_name: str) -> str:
    return _env.get_template(template).render(s=settings, host_name=host_name, hook=HOOK, team_keys=TEAM_KEYS,
                                              front=Front(settings), vrrp=Vrrp(),
                                              limits=Limits(settings), metrics=MetricsView())


def render_with(template: str, host_name: str, **context) -> str:
    """A template of the monitoring host (or any other not rendered from one gateway's settings)."""
    return _env.get_template(template).render(host_name=host_name, metrics=MetricsView(), **context)
