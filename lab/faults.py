"""Faults the lab tests and the benchmark put into a gateway host, each with its way back out."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

INJECTED = "injected: this release does not start"
# Python runs a .pth file's import lines before any program: this one stops the proxy's entry point
# (in_proxy/serve.py, litellm@.service's ExecStart) and nothing else the release runs.
_PTH = ("import os, sys; sys.argv[0].endswith('/serve.py') and "
        f"(os.write(2, b'{INJECTED}\\n'), os._exit(1))")


@contextmanager
def release_does_not_start(release: str, run: Callable[[str], object]) -> Iterator[None]:
    """While inside: `release` installs and checks configs and hooks as before, but its proxy
    instances exit at once, saying INJECTED. `run` runs a shell command on the host."""
    pth = f"$(echo {release}/lib/python3*/site-packages)/zz_injected_fault.pth"
    run(f"printf '%s\\n' \"{_PTH}\" > {pth}")
    try:
        yield
    finally:
        run(f"rm -f {pth}")
