"""Models kept resident on their backends (`keep_loaded: true`): litellm-keep-loaded.service.

Each request for such a model carries `keep_alive: -1` (templates/config.yaml.j2), so Ollama does
not start its default keep-alive again from it; the service loads back what Ollama unloaded all
the same (a restart, an eviction) every minute, and its start waits until every kept model is
resident (on_host/keep_loaded.py). The preflight holds their sizes against each backend's
gpu_memory_gib first (gateway/preflight/backends.py). Every gateway of a fleet runs it: loading a
model that is loaded already changes nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from gateway.services.base import UNIT_DIR, Change, ManagedFile, Retired, Rows, Service
from gateway.services.host import unit_command
from gateway.settings import Settings

UNIT = "litellm-keep-loaded.service"
FILE = "keep-loaded.json"  # in the config directory
EVERY_SECONDS = 60
START_TIMEOUT = "15min"  # loads one after another on a backend, each up to Ollama's 5 min


def keeps_models(s: Settings) -> bool:
    return bool(s.kept_loaded)


SERVICE = Service(UNIT, "keeps the keep_loaded models resident on their backends", Change.RESTART,
                  runs_where=keeps_models)


def kept_file(s: Settings) -> str:
    """What the service keeps loaded: one entry per (model, backend), at the window served there."""
    kept = [{"model": m.name, "tag": m.tag, "backend": b.name, "api_base": b.api_base, "num_ctx": s.window(m, b)}
            for m, b in s.kept_loaded]
    return json.dumps({"kept": kept}, indent=1, sort_keys=True) + "\n"


@dataclass(frozen=True)
class Kept:
    """What the unit template reads."""

    s: Settings
    start_timeout: str = START_TIMEOUT

    @property
    def names(self) -> list[str]:
        return sorted({m.name for m, _ in self.s.kept_loaded})

    @property
    def command(self) -> str:
        return unit_command("keep_loaded", f"{self.s.config_dir}/{FILE}", "--every", str(EVERY_SECONDS))


def rows(r: Rows) -> list[ManagedFile]:
    if not keeps_models(r.s):
        return []
    return [
        r.readable(FILE, "the inventory's keep_loaded models", kept_file(r.s),
                   f"lists the kept models: {', '.join(Kept(r.s).names)}", restarts=(UNIT,)),
        r.unit(SERVICE),
    ]


def retired(s: Settings) -> list[Retired]:
    if keeps_models(s):
        return []
    return [Retired((f"{UNIT_DIR}/{UNIT}",), "No model is kept loaded from here: no model has keep_loaded",
                    (f"systemctl disable --now {UNIT} 2>/dev/null || true",
                     f"rm -f {s.config_dir}/{FILE} {UNIT_DIR}/{UNIT}", "systemctl daemon-reload"))]


def context(s: Settings) -> dict[str, object]:
    return {"kept": Kept(s)}
