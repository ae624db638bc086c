"""Log filters the proxy's logging config installs (templates/logging.json.j2): refused API keys cost
at most one log line per interval, so no client can fill the disk with bad keys between rotations;
the front's health checks that find an instance ready cost none.

Runs inside the LiteLLM proxy (standard library only), imported by uvicorn's logging setup in the
parent and in every worker, from /usr/local/lib/litellm-gateway (PYTHONPATH in the unit).

A refusal shows up twice: LiteLLM Proxy's error line from user_api_key_auth and uvicorn's access line
with status 401. The first of each per interval is kept (without a traceback), saying how many
were left out since the last one; the rest are dropped. Everything else passes untouched.
"""
from __future__ import annotations

import logging
import threading
import time

INTERVAL = 60.0  # seconds
REFUSAL = "user_api_key_auth(): Exception occured"  # LiteLLM's words (sic)
REFUSED_STATUS = 401


def access_line(record: logging.LogRecord) -> tuple[str, object] | None:
    """(path without its query, status) of a uvicorn.access record (args: client, method, path,
    HTTP version, status), or None for any other record."""
    args = record.args if isinstance(record.args, tuple) else ()
    if record.name != "uvicorn.access" or len(args) < 5:
        return None
    return str(args[2]).split("?", 1)[0], args[4]


class RefusedKeys(logging.Filter):
    """One line per INTERVAL for each kind of refusal record; the count of those left out in the next."""

    def __init__(self, interval: float = INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    @staticmethod
    def kind(record: logging.LogRecord) -> str | None:
        """Which refusal the record is ("auth" or "access"), or None for any other record."""
        if record.name == "uvicorn.access":
            access = access_line(record)
            return "access" if access and access[1] == REFUSED_STATUS else None
        if str(record.name).startswith("LiteLLM") and REFUSAL in str(record.msg):
            return "auth"
        return None

    def filter(self, record: logging.LogRecord) -> bool:
        kind = self.kind(record)
        if kind is None:
            return True
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                self._left_out[kind] = self._left_out.get(kind, 0) + 1
                return False
            left_out = self._left_out.pop(kind, 0)
            self._last[kind] = now
        if kind == "auth":
            # The message names the refusal; a traceback would add nothing but lines.
            record.msg, record.args = "API key refused (401)", ()
            record.exc_info = record.exc_text = record.stack_info = None
        if left_out:
            record.msg = (f"{record.getMessage()} [{left_out} more refusal(s) in the last {self.interval:.0f} s "
                          "not logged]")
            record.args = ()
        return True


class QuietHealthChecks(logging.Filter):
    """No access line for a health check answered 200: the front asks every instance every few
    seconds (tens of thousands of lines a day, drowning the requests). An answer other than 200
    is logged: that is the one an operator looks for."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__()
        self.paths = frozenset(paths)

    def filter(self, record: logging.LogRecord) -> bool:
        access = access_line(record)
        return not (access and access[1] == 200 and access[0] in self.paths)
