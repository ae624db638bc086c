"""`python -m checks [INVENTORY] [--skip dns|backends] [--json]`: preflight a fleet, changing nothing.

Exit status (bits, OR-ed): 0 all passed, 2 settings, 4 DNS wrong, 8 DNS temporarily failing
(timeout, SERVFAIL: not a mismatch), 16 backends; 1 the inventory could not be read.
"""
from __future__ import annotations

import argparse
import sys

from gateway.inventory_reader import host_data
from gateway.preflight import EXIT_SETTINGS, run_for_data
from gateway.settings import PREFLIGHT_CLASSES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checks", description=__doc__.splitlines()[0])
    parser.add_argument("inventory", nargs="?", default="inventory.py",
                        help="pyinfra inventory file (default: inventory.py)")
    parser.add_argument("--skip", action="append", default=[], choices=PREFLIGHT_CLASSES,
                        help="skip a class of checks in an emergency (reported loudly)")
    parser.add_argument("--json", action="store_true", help="machine-readable report")
    args = parser.parse_args(argv)
    try:
        data = host_data(args.inventory)
    except SystemExit as refused:  # the inventory's own settings check
        print(refused.code if isinstance(refused.code, str) else f"inventory {args.inventory} refused", file=sys.stderr)
        return EXIT_SETTINGS
    except Exception as error:  # any failure to read the file is reported the same way
        print(f"checks: cannot read inventory {args.inventory}: {error}", file=sys.stderr)
        return 1
    for name in args.skip:
        print(f"!!! WARNING: {name} checks SKIPPED on request (--skip {name}); their failures will not be seen",
              file=sys.stderr)
    report = run_for_data(data, set(args.skip))
    print(report.to_json() if args.json else report.table())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
