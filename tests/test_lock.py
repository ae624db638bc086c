"""The lock of the gateway virtualenv: kept in the repository, matching the default pins, hash-checked."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.utils import canonicalize_name

from gateway.lock import LOCKS, REPO, lock_path, pins_of, read_lock
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
    pins = "litellm[proxy]==1.200.0 prisma==0.15.0 prometheus-client==0.23.1 httptools==0.9.0"
    assert f"no lock for these pins ({pins})" in problem
    assert "python -m gateway.lock" in problem and "locks/litellm-1.200.0-" in problem


def test_a_lock_is_named_by_its_release_and_all_its_pins():
    one = lock_path("litellm[proxy]==1.108.7\nprisma==0.15.0\n")
    assert one.name.startswith("litellm-1.108.7-") and one == lock_path("litellm[proxy]==1.108.7\nprisma==0.15.0\n")
    assert lock_path("litellm[proxy]==1.108.7\nprisma==0.15.1\n") != one


def pip_dry_run(lock: Path) -> subprocess.CompletedProcess[str]:
    """pip's own reading of a lock, as the hosts install it: every entry pinned, every file's hash named,
    nothing resolved (--no-deps), so a release appearing on the registry cannot change the outcome."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--no-input",
         "--disable-pip-version-check", "--require-hashes", "--no-deps", "-r", str(lock)],
        capture_output=True, text=True, timeout=600,
    )


def test_every_lock_in_the_repository_installs_hash_checked_without_resolving():
    locks = sorted(LOCKS.glob("*.txt"))
    assert len(locks) >= 2  # the default release and the older one a rollback goes back to
    with ThreadPoolExecutor(len(locks)) as pool:
        results = dict(zip(locks, pool.map(pip_dry_run, locks), strict=True))
    failed = {lock.name: result.stderr[-1500:] for lock, result in results.items() if result.returncode != 0}
    assert not failed, failed


def test_pip_refuses_a_lock_entry_without_its_hash_or_exact_version(tmp_path):
    """What the check above would say of a lock that lost a hash or a pin (pip's words, offline)."""
    loose = tmp_path / "loose.txt"
    loose.write_text("six>=1.16\n")
    result = pip_dry_run(loose)
    assert result.returncode != 0 and "must have their versions pinned with ==" in result.stderr


def test_the_control_machines_packages_are_exactly_the_pins_and_meet_each_others_requirements():
    """`./run setup` installs requirements.txt with --no-deps, then pip check: this is what it left."""
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout
    installed = {canonicalize_name(line.split("==")[0]): line.split("==")[1] for line in frozen.split() if "==" in line}
    pinned = {canonicalize_name(line.split("==")[0]): line.split("==")[1]
              for line in (REPO / "requirements.txt").read_text().split() if "==" in line}
    assert installed == pinned


def test_a_monitoring_host_is_not_judged_as_a_gateway():
    """`python -m checks` on an inventory with a monitoring host (the lab's mon1): only the gateways are checked."""
    from gateway.inventory import monitoring_group

    _, monitoring = monitoring_group(["mon1.example.org"], {"monitoring_receiver": {"webhook_url": "http://x.example"}})
    report = run_for_data({"gw.example.org": seed_data(litellm_master_key=GOOD_KEY), "mon1.example.org": monitoring},
                          skip={"dns", "backends"})
    assert report.ok and report.exit_code == 0, report.table()


def test_a_lock_made_again_starts_from_the_releases_previous_lock(tmp_path, monkeypatch):
    """make_lock hands uv the newest other lock of the same LiteLLM release as its output file, whose
    versions uv keeps where the pins allow: a pin added moves no other package."""
    from gateway import lock

    monkeypatch.setattr(lock, "LOCKS", tmp_path)
    pins = "litellm[proxy]==1.108.7\nprisma==0.15.0\nhttptools==0.6.4\n"
    assert lock.previous_lock(pins) is None
    older, newer, other_release = (tmp_path / name for name in (
        "litellm-1.108.7-aaaaaaaaaa.txt", "litellm-1.108.7-bbbbbbbbbb.txt", "litellm-1.108.6-cccccccccc.txt"))
    for age, path in enumerate((older, newer, other_release)):
        path.write_text("# a lock\n")
        os.utime(path, (1000 + age, 1000 + age))
    lock.lock_path(pins).write_text("# this very lock, made before\n")
    assert lock.previous_lock(pins) == newer
