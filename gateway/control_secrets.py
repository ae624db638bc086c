"""Secrets the deploy makes once on the control machine: the metrics scrape token, the monitoring
password. Each lives in a file of its own (0600, its directory 0700), outside the repository, and
the hosts get only what they need of it (a digest, a bcrypt hash, a derived password)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def read(path: Path) -> str | None:
    """The secret in `path`, or None when none was made yet."""
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure(path: Path) -> str:
    """The secret in `path`, made once; a concurrent maker's secret wins."""
    found = read(path)
    if found:
        return found
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return ensure(path)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    return ensure(path)
