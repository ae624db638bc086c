"""Talk to the gateway's front (HAProxy) through its admin socket: instance states and requests in flight.

Used by the switch-over (on_host/switch.py) and by `fab status` (on_host/status.py). The socket's
path, the backend's and the servers' names come from the control side's layout (gateway/services/front.py).
"""
from __future__ import annotations

import csv
import io
import os
import socket

from .deadline import wait_until


class FrontError(RuntimeError):
    pass


def command(admin_socket: str, line: str, timeout: float = 5.0) -> str:
    """One command on the admin socket (one connection each, as haproxy's non-interactive mode wants)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(admin_socket)
            conn.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    except OSError as error:
        raise FrontError(f"the front's admin socket {admin_socket} does not answer ({error})") from None
    answer = b"".join(chunks).decode(errors="replace")
    if answer.strip() and not line.startswith("show"):
        raise FrontError(f"the front refused {line!r}: {answer.strip()}")
    return answer


def servers(admin_socket: str, backend: str) -> dict[str, dict[str, str]]:
    """The backend's servers as `show stat` gives them: {server: {"status", "scur", "qcur", ...}}."""
    text = command(admin_socket, "show stat").lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {row["svname"]: row for row in rows
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND")}


def set_state(admin_socket: str, backend: str, server: str, state: str) -> None:
    """ready (takes new requests), drain (only those running finish), maint (none)."""
    command(admin_socket, f"set server {backend}/{server} state {state}")


def in_flight(row: dict[str, str]) -> int:
    """Requests the server is serving or has queued."""
    return int(row.get("scur") or 0) + int(row.get("qcur") or 0)


def wait_drained(admin_socket: str, backend: str, server: str, timeout: float,
                 interval: float = 0.2) -> tuple[bool, dict[str, str], int]:
    """Once a server is set to drain: wait until nothing runs on it (requests in flight or queued)
    or `timeout` seconds have passed. (drained, its last row, the most requests seen running)."""
    most = 0

    def row() -> dict[str, str]:
        nonlocal most
        found = servers(admin_socket, backend)[server]
        most = max(most, in_flight(found))
        return found

    drained, last = wait_until(row, timeout, interval, good=lambda found: in_flight(found) == 0)
    return drained, last, most


def save_state(admin_socket: str, path: str) -> bool:
    """Write the servers' states (`show servers state`) where the next process of a reload reads
    them: a drained or stopped server stays so. False when the front does not answer (not running)."""
    try:
        text = command(admin_socket, "show servers state")
    except FrontError:
        return False
    partial = f"{path}.new"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, path)
    return True
