"""Ollama backends: reachable, answering, and holding every model the inventory assigns them.

Per backend: a TCP connect, `GET /api/version`, and `GET /api/tags`, which must list each assigned
model's tag exactly. A missing model is reported with the command that fixes it. Backends are
checked concurrently.
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
    check: str  # "tcp", "version" or "models"
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
        tags = {_normal(m["name"]) for m in get_json(address, backend, "/api/tags", timeout).get("models", [])}
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
    return results


def check_backends(backends: Sequence[Backend], models: Sequence[Model], timeout: float = 5.0,
                   resolve: Callable[[str], str] = lambda name: name) -> list[BackendResult]:
    by_name = {m.name: m for m in models}
    if not backends:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(backends))) as pool:
        per_backend = list(pool.map(lambda b: check_backend(b, by_name, timeout, resolve), backends))
    return [result for results in per_backend for result in results]
