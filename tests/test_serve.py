"""The proxy instance's entry point guards its forked workers (in_proxy/serve.py): a worker whose
start hangs exits for uvicorn to fork another, and no worker outlives its parent. Real forks."""
from __future__ import annotations

import gc
import os
import signal
import sys
import time
from types import SimpleNamespace

import pytest

from in_proxy import serve
from on_host.deadline import wait_until


class Worker:
    """uvicorn's per-worker object as the supervisor hands it over: `target`, and `server.started`."""

    def __init__(self, starts_after: float | None, runs_for: float) -> None:
        self.server = SimpleNamespace(started=False)
        self.starts_after, self.runs_for = starts_after, runs_for

    def target(self, sockets=None) -> None:
        if self.starts_after is not None:
            time.sleep(self.starts_after)
            self.server.started = True
        time.sleep(self.runs_for)


def subprocess_started(config, target, sockets, stdin_fileno) -> None:
    """uvicorn's `_subprocess.subprocess_started`, as far as a worker's start goes."""
    target(sockets=sockets)


def forked(worker: Worker):
    workers = serve.ForkedWorkers()
    workers.reserved = True  # no LiteLLM here to reserve the parent with
    return workers.Process(target=subprocess_started,
                           kwargs={"config": None, "target": worker.target, "sockets": [], "stdin_fileno": None})


@pytest.fixture(autouse=True)
def collector_unfrozen_after():
    """Forking here freezes this test process's objects as it does an instance's parent: undone."""
    yield
    gc.unfreeze()


class Counting(Worker):
    """Reports how many objects the collector skips (frozen), at its start and a while after it."""

    def __init__(self, report: int) -> None:
        super().__init__(starts_after=0, runs_for=0)
        self.report = report

    def target(self, sockets=None) -> None:
        at_fork = gc.get_freeze_count()
        self.kept = [[i] for i in range(5000)]  # what a worker's start makes, as its router
        self.server.started = True
        time.sleep(1.5)  # the start-up watch looks every 0.5 s
        os.write(self.report, f"{at_fork} {gc.get_freeze_count()}".encode())


def test_the_collector_skips_what_exists_before_the_fork_and_what_the_workers_start_made():
    # A full collection of a worker's heap stalled a request for ~280 ms and dirtied the pages it
    # shares with the parent; frozen objects are never walked again.
    gc.unfreeze()
    read, write = os.pipe()
    process = forked(Counting(write))
    process.start()
    process.join(15)
    at_fork, after_start = map(int, os.read(read, 64).split())
    os.close(read), os.close(write)
    assert process.exitcode == 0
    assert at_fork > 1000, at_fork  # the parent's modules and objects, frozen at the fork
    assert after_start >= at_fork + 5000, (at_fork, after_start)  # and the worker's start-up objects


def test_a_worker_whose_start_hangs_exits_and_says_where_it_waited(monkeypatch, capfd):
    monkeypatch.setattr(serve, "STARTUP_LIMIT", 1.0)
    process = forked(Worker(starts_after=None, runs_for=60))
    process.start()
    process.join(15)
    assert process.exitcode == serve.STARTUP_HUNG  # not uvicorn's 3, which would stop the instance
    err = capfd.readouterr().err
    assert "did not finish its start in 1 s" in err and "in target" in err, err


def test_a_worker_that_starts_in_time_is_left_alone(monkeypatch):
    monkeypatch.setattr(serve, "STARTUP_LIMIT", 1.0)
    process = forked(Worker(starts_after=0.2, runs_for=2))
    process.start()
    process.join(15)
    assert process.exitcode == 0


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_dies_with_its_parent_killed():
    # The parent of a real instance is SIGKILLed when it outlasts TimeoutStopSec; where systemd
    # cannot kill the unit's control group, a worker left behind would keep the port.
    read, write = os.pipe()
    parent = os.fork()
    if parent == 0:
        os.close(read)
        process = forked(Worker(starts_after=0, runs_for=60))
        process.start()
        os.write(write, str(process.pid).encode())
        time.sleep(60)
        os._exit(0)
    os.close(write)
    worker = int(os.read(read, 32))
    assert alive(worker)
    os.kill(parent, signal.SIGKILL)
    os.waitpid(parent, 0)
    gone, _ = wait_until(lambda: not alive(worker), 10, interval=0.1)
    assert gone, f"worker {worker} outlived its parent"
    os.close(read)


def test_a_module_that_cannot_be_imported_is_tried_once_then_fails_at_once(tmp_path, monkeypatch):
    """What LiteLLM's request path imports each time but the release cannot import is marked absent
    at start: later attempts fail as before, without executing the module again."""
    package = tmp_path / "requesttime"
    package.mkdir()
    (package / "__init__.py").write_text("runs = []\n")
    (package / "broken.py").write_text("from requesttime import runs\nruns.append(1)\nimport not_installed_anywhere\n")
    (package / "fine.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("requesttime", "requesttime.broken", "requesttime.fine"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert serve.mark_unimportable(("requesttime.broken", "requesttime.fine")) == ["requesttime.broken"]
    import requesttime

    assert requesttime.runs == [1] and sys.modules["requesttime.fine"].VALUE == 1
    for _ in range(3):  # as LiteLLM's auth does, on every request
        try:
            from requesttime.broken import anything  # noqa: F401
        except ImportError:
            pass
    assert requesttime.runs == [1]  # without the mark, each attempt ran the module again
