"""keepalived's check of the fleet's address: this gateway may hold it while its front answers.

`python3 -m on_host.fleet_check ADMIN_SOCKET HANDOVER_FILE`, run by litellm-fleet.service every
second: exit 0 when the front's admin socket answers `show info` (the process that serves the
fleet's address is alive), or while a stopping front finishes its clients' requests
(on_host/handover.py, HANDOVER_FILE); 1 otherwise. Two failures in a row hand the address to
another gateway.
"""
from __future__ import annotations

import sys

from .front import FrontError, command
from .handover import handing_over


def main(argv: list[str]) -> int:
    try:
        answer = command(argv[0], "show info", timeout=1.5)
    except FrontError as error:
        if len(argv) > 1 and handing_over(argv[1]):
            return 0
        print(error, file=sys.stderr)
        return 1
    return 0 if "Name: HAProxy" in answer else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
