"""Move the fleet's rate-limit Redis primary off one gateway before its maintenance: `fab primary-off`.

`python3 -m on_host.primary --layout JSON --address OWN --off ADDRESS [--wait SECONDS]`, run on
another gateway of the fleet: its sentinel is asked where the primary is; if on ADDRESS, the
sentinels promote a replica (SENTINEL FAILOVER: the replicas are in sync, no counter is lost) and
the answer is awaited. Prints {"was", "primary", "moved"} as JSON, or {"error"}; exit 1 on error.
"""
from __future__ import annotations

import argparse
import json
import sys

from . import shared_limits
from .deadline import wait_until


def primary(sentinel: shared_limits.Resp) -> str:
    return sentinel.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", shared_limits.SERVICE_NAME)[0]


def move_off(layout: dict, own_address: str, off: str, wait: float) -> dict:
    fleet = layout["fleet"]
    password = shared_limits.read_variable(fleet["env_file"], fleet["password_variable"])
    sentinel = shared_limits.Resp(own_address, fleet["sentinel_port"], password, ca_file=fleet.get("redis_ca"))
    try:
        was = primary(sentinel)
        if was != off:
            return {"was": was, "primary": was, "moved": False}
        sentinel.call("SENTINEL", "FAILOVER", shared_limits.SERVICE_NAME)
        moved, now = wait_until(lambda: primary(sentinel), wait, 0.5, good=lambda address: address != off)
        if not moved:
            return {"error": f"the primary is still on {off} after {wait:.0f} s"}
        return {"was": was, "primary": now, "moved": True}
    finally:
        sentinel.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m on_host.primary")
    parser.add_argument("--layout", required=True)
    parser.add_argument("--address", required=True, help="this gateway's fleet address (its sentinel's)")
    parser.add_argument("--off", required=True, help="the fleet address of the gateway the primary must leave")
    parser.add_argument("--wait", type=float, default=30)
    args = parser.parse_args(argv)
    try:
        answer = move_off(json.loads(args.layout), args.address, args.off, args.wait)
    except (OSError, RuntimeError, SystemExit) as error:  # RuntimeError: Redis said no (e.g. NOGOODSLAVE)
        answer = {"error": f"sentinel at {args.address}: {error}"}
    print(json.dumps(answer))
    return 1 if "error" in answer else 0


if __name__ == "__main__":
    sys.exit(main())
