"""Set one gateway's state in this front's backend of gateways: `fab drain` / `fab undrain`.

`python3 -m on_host.fleet_member --layout JSON --server NAME --state drain|ready [--wait SECONDS]`
prints {"status", "in_flight"} as JSON. With --wait, a drain waits until the requests this front
had sent to that gateway have finished (or the time is up: "in_flight" says how many are left).
The state is kept across the front's reloads (on_host/front_state.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from . import front


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layout", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--state", choices=("drain", "ready"), required=True)
    parser.add_argument("--wait", type=float, default=0)
    args = parser.parse_args(argv)
    layout = json.loads(args.layout)
    backend = layout["fleet"]["backend"]
    try:
        for attempt in range(3):  # a front reloading answers a moment later
            try:
                front.set_state(layout["admin_socket"], backend, args.server, args.state)
                break
            except front.FrontError:
                if attempt == 2:
                    raise
                time.sleep(1)
        if args.state == "drain":
            _, row, _ = front.wait_drained(layout["admin_socket"], backend, args.server, args.wait, interval=0.5)
        else:
            row = front.servers(layout["admin_socket"], backend)[args.server]
    except (front.FrontError, KeyError) as error:
        print(json.dumps({"error": f"{args.server} in {backend}: {error}"}))
        return 1
    print(json.dumps({"status": row["status"], "in_flight": front.in_flight(row)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
