"""A proxy instance's entry point (ExecStart of litellm@.service): LiteLLM's own command line, with
uvicorn's workers forked from the parent, which has imported LiteLLM already, instead of spawned.

A spawned worker imports LiteLLM again (about 9 s of CPU each here): with two workers, two thirds
of an instance's start, and of every switch-over. LiteLLM's own gunicorn path does what this does
(the app imported once, then fork), and like it the parent is reserved first: LiteLLM's Rust
runtime, whose threads do not survive a fork, may never start in it.

Python's cyclic garbage collector would otherwise walk every object LiteLLM made at import and at
start-up again and again: a full collection of a worker's heap took about 280 ms here, a request
stalled for that long, and each one touched the pages the workers share with the parent (copy on
write). So objects that exist before a fork, and a worker's own once its start has finished, are
frozen (`gc.freeze`): the collector looks only at what requests make.

A fork copies only the thread that forks: a lock another thread holds at that moment stays held
in the child forever. So the parent runs no other thread (LiteLLM's Prisma query-engine reaper has
nothing to reap here: the gateway has no database), and each worker guards itself: it dies with
its parent (a parent killed at the end of TimeoutStopSec leaves no worker holding the port, even
where systemd cannot kill the unit's control group), and a worker whose start has not finished
within STARTUP_LIMIT exits, for uvicorn's supervisor to fork another.

Runs inside the proxy, with the release's interpreter: standard library, LiteLLM and uvicorn only.
"""
from __future__ import annotations

import ctypes
import faulthandler
import gc
import importlib
import multiprocessing
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
STARTUP_LIMIT = 30.0  # seconds; a forked worker starts in well under one
STARTUP_HUNG = 70  # a worker's exit code when its start hung: not uvicorn's 3 (a broken app, stop all)


# Imported by LiteLLM's auth on every request (its OpenTelemetry tenant routing), though the release
# does not install what they need (opentelemetry-sdk): each request executed part of them again
# before the import failed (~4 % of a worker's time under load). Tried once in the parent: one that
# fails is marked absent (None in sys.modules), so each later attempt fails at once, as it would anyway.
REQUEST_TIME_IMPORTS = (
    "litellm.integrations.otel.logger",
    "litellm.integrations.otel.plumbing.context",
    "litellm.integrations.otel.plumbing.providers",
)


def mark_unimportable(names: tuple[str, ...]) -> list[str]:
    """Import each once; mark those that fail absent. The names marked."""
    marked = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = None
            marked.append(name)
    return marked


def release_interpreter() -> str | None:
    """The release's own interpreter when this one was started through the slot's link (slots/PORT):
    the instance then runs from the release's real directory, and relinking the slot never changes
    code under it. None when already there."""
    real = os.path.realpath(sys.prefix)
    return None if real == sys.prefix else os.path.join(real, "bin", "python")


def die_with_parent(parent: int) -> None:
    """The kernel kills this process when its parent dies (PR_SET_PDEATHSIG); if the parent died
    before that was set, exit now."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(STARTUP_HUNG)


def watch_startup(server, limit: float) -> None:
    """Exit the worker when its server has not finished startup within `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if getattr(server, "started", False):
            gc.freeze()  # the worker's start-up objects (router, callbacks, config) live as long as it does
            return
        time.sleep(0.5)
    print(f"serve.py: worker {os.getpid()} did not finish its start in {limit:.0f} s; "
          "it exits and uvicorn starts another. Where it waited:", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(all_threads=True)
    for task in pending_tasks():
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()
    os._exit(STARTUP_HUNG)


def pending_tasks() -> list:
    """The unfinished asyncio tasks of this process (a start that awaits forever shows here)."""
    import asyncio
    import gc

    return [item for item in gc.get_objects() if isinstance(item, asyncio.Task) and not item.done()]


def forked_worker(parent: int, run, run_kwargs: dict) -> None:
    """A worker's first steps after the fork, then uvicorn's own (`subprocess_started`)."""
    die_with_parent(parent)
    server = getattr(getattr(run_kwargs.get("target"), "__self__", None), "server", None)
    threading.Thread(target=watch_startup, args=(server, STARTUP_LIMIT), daemon=True, name="startup-watch").start()
    run(**run_kwargs)


class ForkedWorkers:
    """Stands in for uvicorn's spawn context (`uvicorn._subprocess.spawn`, whose `Process` its
    supervisor calls for each worker): a worker is forked, after the parent is reserved."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("fork")
        self.reserved = False

    def Process(self, target, kwargs):  # the name and arguments uvicorn calls with
        if not self.reserved:
            from litellm.rust_bridge.fork_guard import reserve_process_for_forking

            reserve_process_for_forking("a proxy instance's parent (in_proxy/serve.py)")
            self.reserved = True
        others = [thread.name for thread in threading.enumerate() if thread is not threading.current_thread()]
        if others:
            print(f"serve.py: forking a worker beside other threads ({', '.join(others)}); "
                  "a lock one of them holds would stay held in the worker", file=sys.stderr, flush=True)
        gc.freeze()  # what the parent imported, shared with the worker: never walked by its collector
        return self.context.Process(target=forked_worker, args=(os.getpid(), target, kwargs))


def main() -> int:
    interpreter = release_interpreter()
    if interpreter:
        os.execv(interpreter, [interpreter, *sys.orig_argv[1:]])
    from uvicorn import _subprocess

    if not hasattr(_subprocess, "spawn") or not hasattr(_subprocess, "get_subprocess"):
        # This uvicorn starts workers another way: say so rather than start them unforked unnoticed.
        print("serve.py: uvicorn._subprocess has no spawn context in this release; "
              "the proxy's entry point needs a change for it", file=sys.stderr)
        return 1
    _subprocess.spawn = ForkedWorkers()
    from litellm.proxy import proxy_cli

    # Reaps Prisma query engines orphaned by killed workers, from a thread in the parent; the
    # gateway runs no database, and the parent must have no thread when it forks.
    proxy_cli.start_query_engine_reaper = lambda: None
    mark_unimportable(REQUEST_TIME_IMPORTS)
    return proxy_cli.run_server()


if __name__ == "__main__":
    sys.exit(main())
