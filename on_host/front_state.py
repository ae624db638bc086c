"""Run by the front's unit before each reload: keep the servers' states across it.

`python3 -m on_host.front_state ADMIN_SOCKET STATE_FILE`. HAProxy's new process would otherwise
start every server as its config says: a gateway drained for maintenance (`fab drain`) or an
instance stopped by a switch-over would be sent requests again until a check failed.
"""
from __future__ import annotations

import sys

from .front import save_state


def main(argv: list[str]) -> int:
    save_state(argv[0], argv[1])
    return 0  # a front that does not answer has no state to keep; the reload goes on


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
