"""`./run setup --control` makes an operator's control machine without root and without the lab's
packages: the virtualenv of the pinned requirements only (here an empty pin list, to stay fast)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def as_nobody(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           "env", f"HOME={directory}", "PATH=/usr/bin:/bin", "./run", *args],
                          cwd=directory, capture_output=True, text=True, timeout=120)


def test_a_control_machine_is_set_up_without_root():
    # Not pytest's tmp_path: it is below a directory only root may enter.
    tmp_path = Path(tempfile.mkdtemp(prefix="control-machine-"))
    shutil.copy(REPO / "run", tmp_path / "run")
    (tmp_path / "requirements.txt").write_text("")
    subprocess.run(["chown", "-R", "nobody:nogroup", str(tmp_path)], check=True)
    done = as_nobody(tmp_path, "setup", "--control")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / ".venv/bin/python").exists() and (tmp_path / ".venv/requirements.installed").exists()
    refused = as_nobody(tmp_path, "setup")  # the lab's set-up wants root, and says what needs none
    assert refused.returncode == 1 and "./run setup --control" in refused.stderr
    shutil.rmtree(tmp_path)
