"""The lab's alert receiver: the webhook Alertmanager of the lab's monitoring host posts to.

Stands where an operator's chat or paging webhook would: it keeps every notification it is sent, one
JSON object a line, in STATE_DIR/alert-sink/received.jsonl (`received()` reads them back), so the
tests can see an alert arrive and resolve. Runs in the root namespace on its own lab address.

usage: python -m lab.alert_sink ADDRESS PORT FILE
"""
from __future__ import annotations

import http.server
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from lab.daemon import Daemon
from lab.topology import ALERT_SINK_ADDRESS, ALERT_SINK_PORT, STATE_DIR

PATH = "/alerts"
RECEIVED = STATE_DIR / "alert-sink" / "received.jsonl"
DAEMON = Daemon("lab.alert_sink", "alert-sink")
URL = f"http://{ALERT_SINK_ADDRESS}:{ALERT_SINK_PORT}{PATH}"


class Sink(http.server.BaseHTTPRequestHandler):
    received: Path

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != PATH:
            self.send_error(404)
            return
        try:
            notification = json.loads(body)
        except ValueError:
            self.send_error(400, "not JSON")
            return
        with self.received.open("a") as out:
            out.write(json.dumps({"at": time.time(), **notification}) + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def received() -> list[dict[str, Any]]:
    """Every notification kept so far, oldest first."""
    try:
        return [json.loads(line) for line in RECEIVED.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def ensure() -> None:
    """Run the sink on its lab address (made first if missing); leave a listening one alone."""
    from lab.machines import ensure_address

    ensure_address(ALERT_SINK_ADDRESS)
    DAEMON.ensure(ALERT_SINK_ADDRESS, ALERT_SINK_PORT, ALERT_SINK_ADDRESS, str(ALERT_SINK_PORT), str(RECEIVED))


def main(argv: list[str]) -> None:
    address, port, file = argv
    Path(file).parent.mkdir(parents=True, exist_ok=True)
    handler = type("Handler", (Sink,), {"received": Path(file)})
    server = http.server.ThreadingHTTPServer((address, int(port)), handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
