"""The switch-over's own bookkeeping (on_host/switch.py), on a directory tree: release links and pruning.
The switch itself runs against real systemd and HAProxy in tests/lab/test_zero_downtime.py."""
from __future__ import annotations

import json
import os
from argparse import Namespace

import pytest

from gateway.services import registry
from gateway.settings import load
from on_host import switch
from tests.test_settings import seed_data


def tree(tmp_path, names):
    root = tmp_path / "releases"
    for age, name in enumerate(names):
        (root / name / "bin").mkdir(parents=True)
        (root / name / "bin" / "litellm").write_text("#!/bin/sh\n")
        (root / name / "bin" / "litellm").chmod(0o755)
        os.utime(root / name, (1000 + age, 1000 + age))  # later in the list: newer
    return root


def layout(tmp_path) -> dict:
    s = load(seed_data(litellm_venv_dir=str(tmp_path)))
    return json.loads(registry.layout(s))


def test_prune_keeps_the_releases_in_use_and_the_newest_others_up_to_keep(tmp_path):
    root = tree(tmp_path, ["r1", "r2", "r3", "r4", "r5"])
    lay = layout(tmp_path)
    switch.relink(lay["instances"]["4001"]["slot"], str(root / "r2"))  # serving an old one
    switch.relink(lay["instances"]["4002"]["slot"], str(root / "r5"))
    switch.relink(lay["current_link"], str(root / "r2"))
    removed = switch.prune(lay, keep=3)
    assert sorted(os.listdir(root)) == ["r2", "r4", "r5"]  # in use: r2, r5; the newest other: r4
    assert sorted(os.path.basename(r) for r in removed) == ["r1", "r3"]
    assert switch.prune(lay, keep=3) == []  # nothing more to do


def test_a_link_is_replaced_in_one_rename_and_can_be_put_back(tmp_path):
    root = tree(tmp_path, ["a", "b"])
    link = str(tmp_path / "slots" / "4001")
    switch.relink(link, str(root / "a"))
    switch.relink(link, str(root / "b"))
    assert switch.target(link) == str(root / "b") and not os.path.lexists(link + ".new")
    switch.relink(link, None)
    assert switch.target(link) is None


@pytest.mark.parametrize("wanted,message", [
    ("previous", "no previous release on this host"),
    ("same", "no instance is serving"),
    ("/nowhere/litellm-9", "is not an installed release"),
])
def test_a_release_that_is_not_there_is_refused_by_name(tmp_path, wanted, message):
    lay = layout(tmp_path)
    runner = switch.Switch(lay, Namespace(release=wanted))
    with pytest.raises(switch.SwitchFailed, match=message):
        runner.release(None, "4002")


@pytest.mark.parametrize("states, expected", [
    ({4001: (True, True), 4002: (True, False)}, 4001),
    ({4001: (True, False), 4002: (True, True)}, 4002),  # both running: the one a boot starts
    ({4001: (False, True), 4002: (True, False)}, 4002),  # enabled but stopped: the running one serves
    ({4001: (False, False), 4002: (False, True)}, None),
])
def test_the_serving_instance_is_the_running_one_a_boot_starts(states, expected):
    from on_host.serving import choose

    assert choose(states) == expected


def test_files_put_back_as_the_serving_instance_read_them_need_no_switch_over(tmp_path, monkeypatch, capsys):
    """--unless-serving: nothing to switch only while the serving instance runs the wanted release,
    with exactly the files now on disk, and answers ready; anything else: a switch-over is due."""
    root = tree(tmp_path, ["r1", "r2"])
    lay = layout(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text("model_list: []\n")
    slot = lay["instances"]["4001"]["slot"]
    switch.relink(slot, str(root / "r1"))
    switch.record_inputs(slot, switch.inputs_digest([str(config)]))
    ready = [True]
    monkeypatch.setattr(switch, "serving", lambda instances: "4001")
    monkeypatch.setattr(switch, "probe", lambda url, timeout: (ready[0], "healthy" if ready[0] else "error"))

    def exit_status(release: str = str(root / "r1")) -> int:
        return switch.main(["--layout", json.dumps(lay), "--release", release, "--key-env-file", "/nowhere",
                            "--unless-serving", "--inputs", str(config)])

    assert exit_status() == 0
    assert "litellm@4001.service already serves release r1 with exactly these files" in capsys.readouterr().out
    config.write_text("model_list: [drifted]\n")
    assert exit_status() == switch.NOT_SERVING  # the files on disk are not what it read
    config.write_text("model_list: []\n")
    assert exit_status() == 0  # put back as it read them
    assert exit_status(str(root / "r2")) == switch.NOT_SERVING  # another release
    assert exit_status("same") == switch.NOT_SERVING  # fab restart always restarts
    ready[0] = False
    assert exit_status() == switch.NOT_SERVING  # it does not answer: replaced
    monkeypatch.setattr(switch, "serving", lambda instances: None)
    ready[0] = True
    assert exit_status() == switch.NOT_SERVING  # nothing serves
