"""A proxy instance's entry point (ExecStart of litellm@.service): LiteLLM's own command line, with
uvicorn's workers forked from the parent, which has imported LiteLLM already, instead of spawned.

A spawned worker imports LiteLLM again (about 9 s of CPU each here): with two workers, two thirds
of an instance's start, and of every switch-over. LiteLLM's own gunicorn path does what this does
(the app imported once, then fork), and like it the parent is reserved first: LiteLLM's Rust
runtime, whose threads do not survive a fork, may never start in it.

Runs inside the proxy, with the release's interpreter: standard library, LiteLLM and uvicorn only.
"""
from __future__ import annotations

import multiprocessing
import os
import sys


def release_interpreter() -> str | None:
    """The release's own interpreter when this one was started through the slot's link (slots/PORT):
    the instance then runs from the release's real directory, and relinking the slot never changes
    code under it. None when already there."""
    real = os.path.realpath(sys.prefix)
    return None if real == sys.prefix else os.path.join(real, "bin", "python")


class ForkedWorkers:
    """Stands in for uvicorn's spawn context (`uvicorn._subprocess.spawn`, whose `Process` its
    supervisor calls for each worker): a worker is forked, after the parent is reserved."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("fork")
        self.reserved = False

    def Process(self, **kwargs):  # the name uvicorn calls
        if not self.reserved:
            from litellm.rust_bridge.fork_guard import reserve_process_for_forking

            reserve_process_for_forking("a proxy instance's parent (in_proxy/serve.py)")
            self.reserved = True
        return self.context.Process(**kwargs)


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
    from litellm.proxy.proxy_cli import run_server

    return run_server()


if __name__ == "__main__":
    sys.exit(main())
