"""The lock of the gateway's virtualenv: every package, exact version and hashes, made from the pins.

`python -m gateway.lock [INVENTORY]` writes one lock per set of pins the inventory's gateways use
(`litellm_version` and `litellm_extra_requirements`) into locks/, with `uv pip compile --universal
--generate-hashes`: one file that holds for every Python a gateway host may run (3.10 to 3.13).
The deploy installs exactly that file with pip's hash checking, so two gateways deployed weeks
apart hold the same packages; a deploy whose pins have no lock stops before any host is changed,
naming this command. Commit the locks: they are what the fleet runs.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.settings import Settings

REPO = Path(__file__).resolve().parent.parent
LOCKS = REPO / "locks"
HEADER = "# litellm-gateway lock for: "
OLDEST_PYTHON = "3.10"  # Ubuntu 22.04's; Debian 12 has 3.11, Ubuntu 24.04 3.12, Debian 13 3.13


def lock_path(requirements: str) -> Path:
    """Where the lock of these pins lives: named by the LiteLLM release and a digest of all pins."""
    pins = requirements.split()
    version = next(p.split("==", 1)[1] for p in pins if p.startswith("litellm"))
    return LOCKS / f"litellm-{version}-{hashlib.sha256(' '.join(pins).encode()).hexdigest()[:10]}.txt"


def pins_of(lock_text: str) -> str | None:
    """The pins a lock was made from (its first line), as a requirements text; None when it has no header."""
    first = lock_text.split("\n", 1)[0]
    return "\n".join(first[len(HEADER):].split()) + "\n" if first.startswith(HEADER) else None


def read_lock(requirements: str) -> tuple[str | None, str]:
    """(the lock's text, or None, and the problem with it) for these pins."""
    path = lock_path(requirements)
    fix = f"run `.venv/bin/python -m gateway.lock` to make {path.relative_to(REPO)} and commit it"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, f"no lock for these pins ({' '.join(requirements.split())}); {fix}"
    if pins_of(text) != requirements:
        return None, f"{path.relative_to(REPO)} was made from other pins; {fix}"
    return text, ""


def release_name(requirements: str) -> str:
    """The release a lock installs on a host: LiteLLM's version and the lock's own digest, so a lock
    made again from the same pins (other dependencies) is another release, never installed over one."""
    text, _ = read_lock(requirements)
    version = lock_path(requirements).stem.split("-")[1]
    return f"litellm-{version}-{hashlib.sha256((text or requirements).encode()).hexdigest()[:10]}"


def release_dir(settings: Settings) -> str:
    """Where the release of the settings' lock is installed on a host."""
    return f"{settings.releases_dir}/{release_name(settings.requirements)}"


def previous_lock(requirements: str) -> Path | None:
    """The newest lock of the same LiteLLM release made from other pins, if any."""
    version = lock_path(requirements).stem.split("-")[1]
    others = [p for p in LOCKS.glob(f"litellm-{version}-*.txt") if p != lock_path(requirements)]
    return max(others, key=lambda p: p.stat().st_mtime, default=None)


def make_lock(requirements: str, uv: str) -> Path:
    """Resolve the pins with uv for every supported Python and write the lock with its header. The
    versions of the release's previous lock are kept where the pins allow (uv prefers what the
    output file holds): adding a pin adds its packages and moves nothing else."""
    path = lock_path(requirements)
    with tempfile.TemporaryDirectory() as work:
        pins, output = Path(work) / "pins.in", Path(work) / "lock.txt"
        pins.write_text(requirements)
        previous = previous_lock(requirements)
        if previous is not None:
            output.write_text(previous.read_text())
        result = subprocess.run(
            [uv, "pip", "compile", "--quiet", "--universal", "--generate-hashes", "--no-header",
             "--python-version", OLDEST_PYTHON, "--output-file", str(output), str(pins)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise SystemExit(f"gateway.lock: uv could not resolve {' '.join(requirements.split())}:\n{result.stderr}")
        body = output.read_text().replace(f"-r {pins}", "the pins").replace(str(pins), "the pins")
    LOCKS.mkdir(exist_ok=True)
    path.write_text(
        f"{HEADER}{' '.join(requirements.split())}\n"
        "# Made by `python -m gateway.lock` (uv pip compile --universal --generate-hashes); do not edit.\n"
        f"{body}"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.lock", description=__doc__.splitlines()[0])
    parser.add_argument("inventory", nargs="?", default="inventory.py",
                        help="pyinfra inventory (default: inventory.py)")
    args = parser.parse_args(argv)
    from gateway.inventory_reader import host_data
    from gateway.settings import load

    uv = str(Path(sys.executable).parent / "uv")
    wanted = sorted({load(data).requirements for data in host_data(args.inventory).values()
                     if "litellm_models" in data or "litellm_backends" in data})
    for requirements in wanted:
        path = make_lock(requirements, uv)
        packages = sum(1 for line in path.read_text().splitlines() if line[:1].isalnum())
        print(f"{path.relative_to(REPO)}: {packages} packages for {' '.join(requirements.split())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
