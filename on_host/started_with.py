"""Run by each proxy instance's unit before it starts (ExecStartPre): records beside the instance's
slot the digest of the files it is about to read (on_host/switch.py `inputs_digest`). Whoever starts
it, a switch-over, a boot or a hand restart, the record says what the running instance read, and a
deploy that puts files back switches over when the serving instance started on other ones.

    python3 -m on_host.started_with SLOT FILE...
"""
from __future__ import annotations

import sys

from .switch import inputs_digest, record_inputs


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python3 -m on_host.started_with SLOT FILE...", file=sys.stderr)
        return 2
    slot, *paths = argv
    record_inputs(slot, inputs_digest(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
