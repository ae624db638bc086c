"""The whole files the deploy manages, rendered from templates/.

Deterministic (no timestamps, no random values): the same context always gives the same bytes,
so pyinfra's checksum comparison is the whole change detection, and `fab status` can tell drift.
What a template reads is its caller's to give: a gateway's from its components
(gateway/services/registry.py: context), the monitoring host's from gateway/monitoring/files.py.
"""
from __future__ import annotations

from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)


def render(template: str, **context: object) -> str:
    return _env.get_template(template).render(**context)
