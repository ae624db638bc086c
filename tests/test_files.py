"""The managed-files table and the one staged install (fast: rows and command lines, no host)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from fabfile.keys import install_command
from gateway.remote import Gateway
from gateway.services.base import REPO, commit_commands, stage_command
from gateway.services.registry import by_name, managed_files
from gateway.settings import load
from gateway.ssh_trust import HostKeyTrust
from tests.test_settings import GOOD_KEY, seed_data

HOST = "gw1.example.org"


def table():
    return managed_files(load(seed_data(litellm_master_key=GOOD_KEY)).resolved(2), HOST, '{"version": 1, "keys": {}}\n')


def test_every_row_has_one_path_a_real_source_and_an_owner_and_mode():
    rows = table()
    assert len({f.path for f in rows}) == len(rows)
    for f in rows:
        assert f.mode in ("600", "640", "644") and f.user == "root"
        # a file of the repository, or a setting's file on the control machine
        assert f.source.split()[0] in ("the", "litellm_metrics_token_file") or (REPO / f.source).is_file(), f.source
    assert [f.name for f in rows if f.secret] == ["litellm.env"]  # the only file holding the master key
    assert GOOD_KEY.encode() not in b"".join(f.content for f in rows)


def test_what_restarts_on_what():
    rows = by_name(table())
    # A change the proxy reads means a switch-over onto a new instance (litellm@PORT), never a restart in place.
    assert rows["config.yaml"].restarts == rows["gateway_auth.py"].restarts == ("litellm@.service",)
    assert rows["litellm.env"].restarts == rows["logging.json"].restarts == ("litellm@.service",)
    assert rows["redis.conf"].restarts == ("litellm-redis.service",)
    assert rows["litellm-front.cfg"].restarts == ("litellm-front.service",)  # reloaded: the socket is handed over
    assert rows["team-keys.json"].restarts == ()  # re-read by the hook: no restart
    assert rows["litellm@.service"].is_unit and rows["litellm-front.service"].is_unit \
        and not rows["config.yaml"].is_unit


def test_a_refused_staged_copy_is_removed_and_the_live_file_kept(tmp_path):
    """The commit commands, run for real against a check that refuses: the live file stays, no copy is left."""
    hook = by_name(table())["gateway_auth.py"]
    assert hook.validate and "{path}" in hook.validate
    live = tmp_path / "gateway_auth.py"
    live.write_text("live\n")
    staged = Path(str(live) + ".staged")
    staged.write_text("new\n")
    refusing = type(hook)(**{**hook.__dict__, "path": str(live), "validate": "false {path}"})
    result = subprocess.run(["sh", "-c", " && ".join(commit_commands(refusing))])
    assert result.returncode != 0 and live.read_text() == "live\n" and not staged.exists()
    staged.write_text("new\n")
    accepting = type(hook)(**{**hook.__dict__, "path": str(live), "validate": "true {path}"})
    assert subprocess.run(["sh", "-c", " && ".join(commit_commands(accepting))]).returncode == 0
    assert live.read_text() == "new\n" and not staged.exists()


def test_keys_push_installs_through_the_same_staged_install_and_never_through_tmp():
    s = load(seed_data(litellm_master_key=GOOD_KEY))
    gateway = Gateway(HOST, s, HOST, "root", None, None, False, HostKeyTrust())
    command = install_command(gateway, '{"version": 1, "keys": {}}\n')
    row = by_name(table())["team-keys.json"]
    assert command.startswith(stage_command(row))  # created empty, root:litellm 0640, before a byte
    assert "cat > /etc/litellm/team-keys.json.staged" in command
    assert command.endswith("mv -f /etc/litellm/team-keys.json.staged /etc/litellm/team-keys.json")
    assert "/tmp" not in command
