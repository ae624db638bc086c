"""The lock of the gateway virtualenv: kept in the repository, matching the default pins, hash-checked."""
from __future__ import annotations

import re

from gateway.lock import lock_path, pins_of, read_lock
from gateway.preflight import EXIT_SETTINGS, run_for_data
from gateway.settings import load
from tests.test_settings import GOOD_KEY, seed_data


def test_the_default_pins_have_a_lock_in_the_repository_with_a_hash_for_every_package():
    s = load(seed_data(litellm_master_key=GOOD_KEY))
    text, problem = read_lock(s.requirements)
    assert problem == "" and pins_of(text) == s.requirements
    packages = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", text, re.M)
    assert ("litellm", "1.108.7") in packages and ("prisma", "0.15.0") in packages and len(packages) > 100
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
        if block[:1].isalnum():
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_pins_without_a_lock_stop_the_preflight_naming_the_command():
    report = run_for_data({"gw.example.org": seed_data(litellm_master_key=GOOD_KEY, litellm_version="1.200.0")})
    assert report.exit_code == EXIT_SETTINGS
    [problem] = report.settings_problems["gw.example.org"]
    assert "no lock for these pins (litellm[proxy]==1.200.0 prisma==0.15.0 prometheus-client==0.23.1)" in problem
    assert "python -m gateway.lock" in problem and "locks/litellm-1.200.0-" in problem


def test_a_lock_is_named_by_its_release_and_all_its_pins():
    one = lock_path("litellm[proxy]==1.108.7\nprisma==0.15.0\n")
    assert one.name.startswith("litellm-1.108.7-") and one == lock_path("litellm[proxy]==1.108.7\nprisma==0.15.0\n")
    assert lock_path("litellm[proxy]==1.108.7\nprisma==0.15.1\n") != one
