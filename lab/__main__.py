"""`python -m lab up | down | status [--json]`."""
from __future__ import annotations

import argparse
import json
import sys

from lab import control
from lab.machines import LabError
from lab.status import report


def print_status(report: dict) -> bool:
    healthy = report["dns"]["running"]
    print(f"dns      {report['dns']['address']:<15} {'running' if report['dns']['running'] else 'STOPPED'}")
    for entry in report["gateways"] + report["backends"]:
        service = entry.get("gateway_listening", entry.get("ollama_listening"))
        state = "running" if entry["running"] else "STOPPED"
        healthy &= entry.get("optional", False) or (entry["running"] and entry["ssh"])
        print(
            f"{entry['name']:<8} {entry['address']:<15} {state:<8} ssh={'up' if entry['ssh'] else 'DOWN':<5}"
            f" service={'up' if service else 'down':<5} {entry['url']}"
        )
    if report["fleet"]:
        proxy = report["package_proxy"]
        healthy &= proxy["running"]
        address, _, port = proxy["address"].rpartition(":")
        print(f"proxy    {address:<15} {'running' if proxy['running'] else 'STOPPED':<8} port={port}")
    for entry in report["fleet"]:
        healthy &= entry.get("optional", False) or (entry["running"] and entry["ssh"])
        print(
            f"{entry['name']:<8} {entry['address']:<15} {'running' if entry['running'] else 'STOPPED':<8}"
            f" ssh={'up' if entry['ssh'] else 'DOWN':<5} netns={entry['namespace']}"
        )
    monitoring = report["monitoring"]
    if monitoring:
        healthy &= monitoring["running"] and monitoring["ssh"] and monitoring["alert_sink"]["running"]
        print(
            f"{monitoring['name']:<8} {monitoring['address']:<15}"
            f" {'running' if monitoring['running'] else 'STOPPED':<8}"
            f" ssh={'up' if monitoring['ssh'] else 'DOWN':<5}"
            f" prometheus={'up' if monitoring['prometheus_listening'] else 'down':<5}"
            f" {monitoring['prometheus_url']}  alertmanager {monitoring['alertmanager_url']}"
        )
        sink = monitoring["alert_sink"]
        print(f"alerts   {sink['url']:<40} {'running' if sink['running'] else 'STOPPED'}"
              f"  (received: {sink['received_file']})")
    return healthy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description="The local LiteLLM gateway lab.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build and boot the lab hosts and DNS (idempotent)")
    up.add_argument("--gateways", type=int, help="how many gateway hosts (default: as before, 1)")
    up.add_argument("--fleet", type=int, help="how many fleet gateways, each in a network namespace of its own "
                                              "(default: as before, 0)")
    up.add_argument("--monitoring", action=argparse.BooleanOptionalAction,
                    help="the monitoring host (Prometheus, Alertmanager; default: as before, on)")
    down = sub.add_parser("down", help="stop every lab host, the DNS server and the package proxy")
    down.add_argument("--purge", action="store_true",
                      help="also delete the hosts' file systems and the fleet's network")
    status = sub.add_parser("status", help="what runs, where, and where the master key is")
    status.add_argument("--json", action="store_true", help="machine-readable output for scripts")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            control.up(args.gateways, args.fleet, args.monitoring)
            return 0 if print_status(report()) else 1
        if args.command == "down":
            control.down(purge=args.purge)
            return 0
        now = report()
        if args.json:
            print(json.dumps(now, indent=2))
            return 0
        return 0 if print_status(now) else 1
    except (LabError, ValueError) as error:  # ValueError: a host index outside 1..30
        print(f"lab: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
