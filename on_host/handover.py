"""The fleet's address leaves a stopping front without a failed request: the front's stop and start.

`python3 -m on_host.handover stop ADDRESS PORT LIMIT HANDOVER_FILE ADMIN_SOCKET VARIABLE [PID]`
(litellm-front.service's ExecStop, as root), when this gateway holds the fleet's address:
HANDOVER_FILE tells keepalived's check (on_host/fleet_check.py) to keep the address meanwhile;
new connections to it are dropped in the kernel (not refused: the client's TCP sends its SYN again
after 1 s and 3 s, by then to the gateway that took the address); VARIABLE is set in the front
(ADMIN_SOCKET), so every answer on the connections open closes its connection (the fleet's
frontend, litellm-front.cfg.j2); and this waits until no client connection to the address is left.
The front keeps serving all along: a request that arrives at any moment is answered (a soft stop
here would stop its proxies under a request arriving that instant). Only then does the address
move (keepalived is stopped after the front, or its check fails): the move cuts no connection, and
systemd's soft stop (SIGUSR1) finishes what other gateways' fronts still have running here. The
wait ends early, the front's remaining connections closed, once a new client has been kept waiting
PATIENCE seconds (the official client gives up connecting after 5 s), or after LIMIT seconds.

`python3 -m on_host.handover start` (ExecStartPost, once the new front listens): the drop is
removed, whatever an earlier stop left.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time

from .front import FrontError, command

TABLE = "litellm_handover"  # nft table inet TABLE: only the stopping front's drop, nothing else
COUNTER = "waiting"  # new connections dropped so far
PATIENCE = 2.0  # seconds a new client may wait: SYNs go again at 1 s and 3 s, the SDK connects for 5 s
SETTLE = 0.2  # without the variable: connections the kernel completed before the drop are accepted meanwhile
# TCP states of a connection whose client still waits on the front: ESTABLISHED, SYN_RECV, and
# FIN_WAIT1/CLOSING (the front closed it, its last bytes not yet acknowledged). Not CLOSE_WAIT or
# LAST_ACK: that client has closed its side, it waits for nothing (one that gave up on a request
# to a gateway that died, which the front would otherwise wait on until its server timeout).
OPEN_STATES = {"01", "03", "04", "0B"}


def ruleset(address: str, port: int) -> str:
    """The drop: SYNs (new connections) to the fleet's address and port, counted."""
    return (f"table inet {TABLE} {{\n"
            f"    counter {COUNTER} {{ }}\n"
            "    chain input {\n"
            "        type filter hook input priority filter; policy accept;\n"
            f"        ip daddr {address} tcp dport {port} tcp flags & (syn | ack) == syn counter name {COUNTER} drop\n"
            "    }\n"
            "}\n")


def nft(*args: str, text: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["/usr/sbin/nft", *args], input=text, capture_output=True, text=True)


def remove_drop() -> None:
    nft("delete", "table", "inet", TABLE)  # absent: nothing to remove


def add_drop(address: str, port: int) -> None:
    remove_drop()
    done = nft("-f", "-", text=ruleset(address, port))
    if done.returncode != 0:
        raise RuntimeError(f"nft could not add the drop: {done.stderr.strip()}")


def dropped() -> int:
    """New connections the drop has kept waiting so far."""
    done = nft("-j", "list", "counter", "inet", TABLE, COUNTER)
    if done.returncode != 0:
        return 0
    for item in json.loads(done.stdout).get("nftables", []):
        if "counter" in item:
            return int(item["counter"].get("packets", 0))
    return 0


def holds(address: str) -> bool:
    """Whether the address is on one of this host's interfaces now (keepalived has put it there)."""
    done = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True)
    return any(f" {address}/" in line for line in done.stdout.splitlines())


def _hex_endpoint(address: str, port: int) -> str:
    """How /proc/net/tcp writes ADDRESS:PORT (the address's bytes as the host stores a word)."""
    packed = ipaddress.IPv4Address(address).packed
    return f"{int.from_bytes(packed, sys.byteorder):08X}:{port:04X}"


def open_connections(address: str, port: int, table: str = "/proc/net/tcp") -> int:
    """Client connections to ADDRESS:PORT this host still serves."""
    local = _hex_endpoint(address, port)
    count = 0
    with open(table, encoding="ascii") as handle:
        next(handle)
        for line in handle:
            fields = line.split()
            if fields[1] == local and fields[3] in OPEN_STATES:
                count += 1
    return count


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def write_handover(path: str, seconds: float) -> None:
    """Keep the address this long at most, whatever happens to this script."""
    partial = f"{path}.new"
    with open(partial, "w", encoding="ascii") as handle:
        handle.write(f"{time.time() + seconds:.3f}\n")
    os.replace(partial, path)


def handing_over(path: str) -> bool:
    """Whether a stopping front asked to keep the address, and its time is not up."""
    try:
        with open(path, encoding="ascii") as handle:
            return time.time() < float(handle.read().strip())
    except (OSError, ValueError):
        return False


def close_every_answer(admin_socket: str, variable: str) -> str | None:
    """Set VARIABLE in the front: each answer now closes its connection. Why not, if it could not."""
    try:
        command(admin_socket, f"experimental-mode on; set var {variable} int(1)")
    except FrontError as error:
        return str(error)
    return None


def stop(address: str, port: int, pid: int, limit: float, handover_file: str, admin_socket: str,
         variable: str) -> str:
    """Hand the address over as above; what happened, for the journal."""
    if not pid or not alive(pid):
        return "the front is not running: nothing to hand over"
    if not holds(address):
        return f"this gateway does not hold {address}: the front stops softly (systemd's SIGUSR1)"
    with contextlib.suppress(OSError):  # keepalived is not running: nothing moves the address meanwhile
        write_handover(handover_file, limit + 5)
    try:
        return _drain(address, port, pid, limit, admin_socket, variable)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(handover_file)


def _drain(address: str, port: int, pid: int, limit: float, admin_socket: str, variable: str) -> str:
    add_drop(address, port)
    refused = close_every_answer(admin_socket, variable)
    if refused:
        # A front that cannot be told (its socket does not answer): its own soft stop closes each
        # connection after its answer instead.
        time.sleep(SETTLE)
        os.kill(pid, signal.SIGUSR1)
    started = time.monotonic()
    first_wait = None
    while True:
        left = open_connections(address, port)
        if left == 0:
            reason = "every client connection ended"
            break
        if first_wait is None and dropped():
            first_wait = time.monotonic()
        if first_wait is not None and time.monotonic() - first_wait >= PATIENCE:
            reason = f"a new client waited {PATIENCE:.0f} s"
            break
        if time.monotonic() - started >= limit:
            reason = f"the limit of {limit:.0f} s"
            break
        time.sleep(0.05)
    if left and alive(pid):
        os.kill(pid, signal.SIGTERM)  # hard stop: the connections left are closed before the address moves
    how = f"; the front soft-stopped instead, as {refused}" if refused else ""
    return (f"handed {address} over after {time.monotonic() - started:.2f} s ({reason}): {left} connection(s) "
            f"left, {dropped()} new connection(s) kept waiting{how}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"]:
        remove_drop()
        return 0
    if argv[:1] == ["stop"] and len(argv) in (7, 8):
        address, port, limit, handover_file, admin_socket, variable = (
            argv[1], int(argv[2]), float(argv[3]), argv[4], argv[5], argv[6])
        pid = int(argv[7]) if len(argv) == 8 and argv[7] else 0  # no MAINPID: the front exited already
        print(f"litellm-front: {stop(address, port, pid, limit, handover_file, admin_socket, variable)}", flush=True)
        return 0
    print("usage: python3 -m on_host.handover start | "
          "stop ADDRESS PORT LIMIT HANDOVER_FILE ADMIN_SOCKET VARIABLE [PID]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
