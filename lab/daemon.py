"""The lab's own Python servers on the control machine (the package proxy, the alert sink): started
detached with a PID file and a log under STATE_DIR, found again by that file, stopped with SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab.topology import STATE_DIR

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Daemon:
    module: str  # run as `python -m MODULE ARGS...`
    directory: str  # under STATE_DIR: its PID file and log
    stem: str = "daemon"  # STEM.pid, STEM.log

    @property
    def pid_file(self) -> Path:
        return STATE_DIR / self.directory / f"{self.stem}.pid"

    @property
    def log(self) -> Path:
        return STATE_DIR / self.directory / f"{self.stem}.log"

    def pid(self) -> int | None:
        """PID of the running daemon (checked to be this program: a PID reused after a reboot is not)."""
        try:
            value = int(self.pid_file.read_text())
            cmdline = Path(f"/proc/{value}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{value}/stat").read_text().rpartition(")")[2].split()[0]
        except (FileNotFoundError, ValueError, ProcessLookupError, IndexError):
            return None
        return value if self.module.encode() in cmdline and state != "Z" else None

    def stop(self) -> None:
        value = self.pid()
        if value is not None:
            os.kill(value, signal.SIGTERM)
            for _ in range(50):
                if self.pid() is None:
                    break
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)

    def start(self, *args: str) -> subprocess.Popen:
        """Start it detached (a session of its own: it outlives the command that started it)."""
        self.stop()
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            process = subprocess.Popen([sys.executable, "-m", self.module, *args], cwd=REPO, stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(f"{process.pid}\n")
        return process

    def ensure(self, address: str, port: int, *args: str) -> None:
        """Running and listening on address:port; one that already is stays as it is."""
        from lab.machines import LabError, port_open

        if self.pid() is not None and port_open(address, port):
            return
        process = self.start(*args)
        for _ in range(50):
            if port_open(address, port):
                return
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise LabError(f"{self.module} is not answering on {address}:{port} (log: {self.log})")
