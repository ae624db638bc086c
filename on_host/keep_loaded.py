"""Keep the keep_loaded models resident on their Ollama backends: litellm-keep-loaded.service.

Ollama unloads a model once its keep-alive has run out, evicts one when another must load, and
forgets them all when it restarts. For each (backend, model) of the file the deploy wrote, this
asks the backend's `/api/ps`; a model that is not loaded at its window with a keep-alive of
forever is loaded (an empty prompt with `keep_alive: -1` and the window as `num_ctx`, as
`ollama run` does). Then `/api/ps` must list every kept model of that backend together: one that
went while another loaded does not fit beside it, and that is said, with the fix.

The first round decides the start: the service tells systemd it is ready (sd_notify) only once
every kept model is resident, so the deploy's restart fails with the reason in the journal. Later
rounds (every --every seconds) load back what went and log only what they changed.

`python3 -m on_host.keep_loaded FILE [--every SECONDS] [--once]`; FILE is JSON:
{"kept": [{"model": public name, "tag": Ollama tag, "backend": name, "api_base": URL, "num_ctx": N}]}
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

ASK_TIMEOUT = 10.0
LOAD_TIMEOUT = 300.0  # Ollama's own OLLAMA_LOAD_TIMEOUT default: a load may take minutes
FOREVER = timedelta(days=365)  # keep_alive -1: Ollama reports an expiry centuries away


def call(api_base: str, path: str, body: dict[str, Any] | None = None, timeout: float = ASK_TIMEOUT) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{api_base}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


def full_tag(tag: str) -> str:
    return tag if ":" in tag else f"{tag}:latest"


def pinned(model: dict[str, Any], now: datetime) -> bool:
    """Loaded with a keep-alive of forever (its expiry is more than a year away)."""
    try:
        expires = datetime.fromisoformat(str(model.get("expires_at", "")).replace("Z", "+00:00"))
    except ValueError:
        return False
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return expires - now > FOREVER


def resident(ps: dict[str, Any], tag: str, num_ctx: int, now: datetime) -> bool:
    """`/api/ps` lists the model at this window, kept forever (a window Ollama does not report counts)."""
    for model in ps.get("models", []):
        if full_tag(model.get("name") or model.get("model") or "") == full_tag(tag):
            return model.get("context_length") in (None, num_ctx) and pinned(model, now)
    return False


def keep_backend(kept: list[dict[str, Any]], now: Callable[[], datetime] = lambda: datetime.now(UTC)
                 ) -> tuple[list[str], list[str]]:
    """One backend's round: (what was done, what is wrong). Every entry of `kept` is this backend's."""
    backend, api_base = kept[0]["backend"], kept[0]["api_base"]
    done: list[str] = []
    try:
        ps = call(api_base, "/api/ps")
        for entry in kept:
            if resident(ps, entry["tag"], entry["num_ctx"], now()):
                continue
            started = time.monotonic()
            call(api_base, "/api/generate", {"model": entry["tag"], "prompt": "", "keep_alive": -1,
                                             "options": {"num_ctx": entry["num_ctx"]}}, timeout=LOAD_TIMEOUT)
            done.append(f"{backend}: {entry['model']} ({entry['tag']}) loaded at a window of {entry['num_ctx']}, "
                        f"kept resident ({time.monotonic() - started:.1f} s)")
        ps = call(api_base, "/api/ps")
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:200]
        return done, [f"{backend} ({api_base}): Ollama answered {error.code} {detail}; fix: ollama pull the model "
                      "there, or see its journal (journalctl -u ollama)"]
    except (OSError, ValueError) as error:
        return done, [f"{backend} ({api_base}) does not answer: {error}; fix: start Ollama there, or check the "
                      "address in the inventory"]
    gone = [e for e in kept if not resident(ps, e["tag"], e["num_ctx"], now())]
    if not gone:
        return done, []
    listed = ", ".join(sorted(m.get("name", "?") for m in ps.get("models", []))) or "nothing"
    return done, [f"{backend} cannot hold {', '.join(e['model'] for e in kept)} loaded together: after loading "
                  f"them its /api/ps lists {listed}, without {', '.join(e['model'] for e in gone)}; fix: set "
                  "keep_loaded on fewer of its models, serve one from another backend, or check its "
                  "gpu_memory_gib and OLLAMA_MAX_LOADED_MODELS"]


def keep_all(kept: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Every backend's round, at once."""
    by_backend: dict[str, list[dict[str, Any]]] = {}
    for entry in kept:
        by_backend.setdefault(entry["backend"], []).append(entry)
    if not by_backend:
        return [], []
    with ThreadPoolExecutor(max_workers=min(16, len(by_backend))) as pool:
        rounds = list(pool.map(keep_backend, by_backend.values()))
    return [line for done, _ in rounds for line in done], [line for _, wrong in rounds for line in wrong]


def notify(message: str) -> None:
    """sd_notify: tell systemd (Type=notify) this service is ready; nothing outside a unit."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between rounds")
    parser.add_argument("--once", action="store_true", help="one round, then exit (0: every kept model resident)")
    args = parser.parse_args(argv)
    with open(args.file, encoding="utf-8") as handle:
        kept = json.load(handle)["kept"]
    done, wrong = keep_all(kept)
    for line in done + wrong:
        print(line, flush=True)
    if wrong:
        return 1
    print(f"{len(kept)} kept model(s) resident on their backends", flush=True)
    if args.once:
        return 0
    notify("READY=1")
    while True:
        time.sleep(args.every)
        done, wrong = keep_all(kept)
        for line in done + wrong:
            print(line, file=sys.stderr if line in wrong else sys.stdout, flush=True)


if __name__ == "__main__":
    sys.exit(main())
