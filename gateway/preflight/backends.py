"""Ollama backends: reachable, answering, and holding every model the inventory assigns them.

Per backend: a TCP connect, `GET /api/version`, and `GET /api/tags`, which must list each assigned
model's tag exactly. A missing model is reported with the command that fixes it. Where models are
kept loaded (keep_loaded), their sizes as the backend reports them (`size_vram` in `/api/ps` where
loaded, which counts the context's cache, else the file's `size` in `/api/tags`) must fit together in
its declared gpu_memory_gib (Ollama reports no total). Backends are checked concurrently.
"""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gateway.settings import Backend, Model


@dataclass(frozen=True)
class BackendResult:
    backend: str
    check: str  # "tcp", "version", "models" or "memory"
    ok: bool
    detail: str
    fix: str = ""
    missing: tuple[str, ...] = field(default=())


def get_json(address: str, backend: Backend, path: str, timeout: float):
    """GET from the backend at a resolved address, with the backend's own name in Host."""
    host = f"[{address}]" if ":" in address else address
    request = urllib.request.Request(f"http://{host}:{backend.port}{path}",
                                     headers={"Host": f"{backend.address}:{backend.port}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _normal(tag: str) -> str:
    return tag if ":" in tag else f"{tag}:latest"


def check_backend(backend: Backend, models: dict[str, Model], timeout: float = 5.0,
                  resolve: Callable[[str], str] = lambda name: name) -> list[BackendResult]:
    """`resolve` maps the backend's name to the address to connect to (the preflight's resolver)."""
    name = backend.name
    try:
        address = resolve(backend.address)
        with socket.create_connection((address, backend.port), timeout=timeout):
            pass
    except OSError as error:
        return [BackendResult(name, "tcp", False, f"cannot connect to {backend.address}:{backend.port}: {error}",
                              fix="start Ollama there (systemctl start ollama) or fix address/port in the inventory")]
    results = [BackendResult(name, "tcp", True, f"{backend.address}:{backend.port} accepts connections")]
    try:
        version = get_json(address, backend, "/api/version", timeout).get("version", "?")
        results.append(BackendResult(name, "version", True, f"Ollama {version}"))
        tags = {_normal(m["name"]): m for m in get_json(address, backend, "/api/tags", timeout).get("models", [])}
    except (OSError, ValueError, KeyError, urllib.error.URLError) as error:
        results.append(BackendResult(name, "version", False, f"{backend.api_base} does not answer as Ollama: {error}",
                                     fix="check that Ollama (not another service) listens there"))
        return results
    wanted = {m: _normal(models[m].tag) for m in backend.models if m in models}
    missing = tuple(sorted(tag for tag in wanted.values() if tag not in tags))
    if missing:
        results.append(BackendResult(
            name, "models", False, f"missing {', '.join(missing)}",
            fix="; ".join(f"on {backend.address}: ollama pull {tag}" for tag in missing), missing=missing,
        ))
    else:
        results.append(BackendResult(name, "models", True, f"has all {len(wanted)} assigned models"))
    kept = [models[m] for m in backend.models if m in models and models[m].keep_loaded]
    if kept and not missing and backend.gpu_memory_gib is not None:
        try:
            loaded = {_normal(m["name"]): m for m in get_json(address, backend, "/api/ps", timeout).get("models", [])}
        except (OSError, ValueError, KeyError, urllib.error.URLError) as error:
            results.append(BackendResult(name, "memory", False, f"/api/ps does not answer: {error}",
                                         fix="check that Ollama (not another service) listens there"))
            return results
        results.append(kept_fit(backend, kept, tags, loaded))
    return results


def kept_fit(backend: Backend, kept: Sequence[Model], tags: dict[str, dict], loaded: dict[str, dict]) -> BackendResult:
    """Whether the backend's keep_loaded models fit in its GPU memory together, by its own figures."""
    sizes = {}
    for model in kept:
        tag = _normal(model.tag)
        figure = (loaded.get(tag) or {}).get("size_vram") or tags[tag].get("size") or 0
        sizes[model.name] = int(figure) / 2**30
    need, have = sum(sizes.values()), backend.gpu_memory_gib or 0.0
    each = ", ".join(f"{name} {gib:.1f} GiB" for name, gib in sizes.items())
    if need > have:
        return BackendResult(backend.name, "memory", False,
                             f"the keep_loaded models need {need:.1f} GiB together ({each}), more than its "
                             f"gpu_memory_gib of {have:g}",
                             fix="set keep_loaded on fewer of its models, serve one from another backend, or correct "
                                 "gpu_memory_gib if its GPUs hold more")
    return BackendResult(backend.name, "memory", True,
                         f"the keep_loaded models fit: {need:.1f} of {have:g} GiB ({each})")


def check_backends(backends: Sequence[Backend], models: Sequence[Model], timeout: float = 5.0,
                   resolve: Callable[[str], str] = lambda name: name) -> list[BackendResult]:
    by_name = {m.name: m for m in models}
    if not backends:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(backends))) as pool:
        per_backend = list(pool.map(lambda b: check_backend(b, by_name, timeout, resolve), backends))
    return [result for results in per_backend for result in results]
