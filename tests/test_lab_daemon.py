"""The lab's own daemons after a reboot: their PID files survive, their processes do not."""
from __future__ import annotations

import os

from lab import daemon
from lab.daemon import Daemon


def test_a_pid_file_left_by_a_reboot_is_not_taken_for_the_daemon(tmp_path, monkeypatch):
    monkeypatch.setattr(daemon, "STATE_DIR", tmp_path)
    sink = Daemon("lab.alert_sink", "alert-sink")
    assert sink.pid() is None  # no file
    sink.pid_file.parent.mkdir(parents=True)
    sink.pid_file.write_text(f"{os.getpid()}\n")  # the PID now belongs to another program (this test)
    assert sink.pid() is None
    sink.pid_file.write_text("4194304\n")  # beyond pid_max: no such process
    assert sink.pid() is None
    sink.stop()  # nothing to stop: the stale file goes
    assert not sink.pid_file.exists()


def test_a_daemon_that_cannot_start_leaves_its_reason_in_its_log_and_no_pid(tmp_path, monkeypatch):
    monkeypatch.setattr(daemon, "STATE_DIR", tmp_path)
    sleeper = Daemon("this_module_does_not_exist_so_python_exits", "sleeper")
    process = sleeper.start()
    process.wait(timeout=30)  # python -m of a missing module exits: no daemon left behind
    assert sleeper.pid() is None
    assert "No module named" in sleeper.log.read_text()
