"""`fab health`: every model on every backend, present and loaded, and what each backend holds in GPU
memory, without sending a completion."""
from __future__ import annotations

from fabric import task
from invoke.exceptions import Exit

from fabfile.common import fleet_of
from gateway.preflight.backends import get_json
from gateway.settings import Backend
from gateway.table import table


def _context(loaded: dict | None, declared: int) -> str:
    """The window a loaded model runs with, beside the one the inventory declares for it."""
    if loaded is None:
        return f"- (declared {declared})"
    actual = loaded.get("context_length")
    if actual is None:
        return f"? (declared {declared}; this Ollama does not say)"
    return f"{actual}" if actual == declared else f"{actual} (DECLARED {declared}: loaded by a request without it)"


def _held(backend: Backend, loaded: dict[str, dict]) -> list[str]:
    """A backend's residency as its /api/ps tells it: how many models, the GPU memory they hold (size_vram;
    of the inventory's gpu_memory_gib where declared: Ollama reports neither its total nor its queue),
    and each model with its own share."""
    gib = sum(int(m.get("size_vram") or 0) for m in loaded.values()) / 2**30
    each = ", ".join(f"{name} ({int(m.get('size_vram') or 0) / 2**30:.1f} GiB)" for name, m in sorted(loaded.items()))
    total = f" of {backend.gpu_memory_gib:g}" if backend.gpu_memory_gib is not None else ""
    return [backend.name, str(len(loaded)), f"{gib:.1f}{total} GiB", each or "-"]


@task
def health(c):
    """Per model and backend: present, loaded, the window it runs with; per backend its GPU memory (no completions)."""
    fleet = fleet_of(c)
    resolve = fleet.resolver()
    timeout = fleet.gateways[0].settings.preflight_timeout
    settings = fleet.gateways[0].settings
    by_name = {m.name: m for m in fleet.models}
    rows, healthy, held = [], True, []
    for backend in fleet.backends:
        try:
            address = resolve(backend.address)
            have = {m["name"] for m in get_json(address, backend, "/api/tags", timeout).get("models", [])}
            loaded = {m["name"]: m for m in get_json(address, backend, "/api/ps", timeout).get("models", [])}
        except Exception as error:
            healthy = False
            held.append([backend.name, "-", "-", "UNREACHABLE"])
            rows += [[name, backend.name, by_name[name].tag, "UNREACHABLE", "-", "-", str(error)]
                     for name in backend.models]
            continue
        for name in backend.models:
            model = by_name[name]
            tag = model.tag if ":" in model.tag else f"{model.tag}:latest"
            present = tag in have
            healthy &= present
            rows.append([name, backend.name, tag, "yes" if present else "MISSING",
                         "yes" if tag in loaded else "no",
                         _context(loaded.get(tag), settings.window(model, backend)),
                         f"loaded until {loaded[tag].get('expires_at', '')}" if tag in loaded
                         else ("" if present else f"fix: ollama pull {tag}")])
        held.append(_held(backend, loaded))
    rows.sort()
    print(table(("MODEL", "BACKEND", "TAG", "PRESENT", "LOADED", "CONTEXT", "DETAIL"), rows))
    print()
    print(table(("BACKEND", "MODELS LOADED", "GPU MEMORY USED", "LOADED NOW"), held))
    if not healthy:
        raise Exit("a model is missing or a backend is unreachable", code=1)
