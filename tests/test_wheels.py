"""The lock's wheels fetched on the control machine: markers per host, the cache, sdist builds, errors.

All fast and offline (small made-up wheels and sdists served by --find-links) but the last one,
which downloads the real lock's wheels for Debian 12 from PyPI (about 180 MB, ~20 s).
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import gateway.wheels as wheels
import inventory
from gateway.lock import read_lock
from gateway.settings import DEFAULTS, load
from gateway.wheels import FetchError, Target, bundle, fetch, install_commands, needed, parse_probe, probe_command

REAL_LOCK = read_lock(load({**DEFAULTS, "litellm_models": inventory.MODELS, "litellm_backends": inventory.BACKENDS})
                      .requirements)[0]  # the lock the deploy installs by default
HERE = parse_probe(subprocess.run(probe_command(sys.executable), shell=True, capture_output=True, text=True).stdout)
DEAD_INDEX = "http://127.0.0.1:9/"


@pytest.fixture(autouse=True)
def _own_pip_configuration(monkeypatch):
    """pip here reads only what a test gives it: no pip.conf, no PIP_* of the machine running the tests."""
    for name in [n for n in os.environ if n.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_wheel(directory: Path, name: str, version: str, tag: str = "py3-none-any") -> str:
    """A small installable wheel; returns its sha256."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{p},,\n" for p in files) + f"{dist}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    (directory / f"{name}-{version}-{tag}.whl").write_bytes(buffer.getvalue())
    return sha256(buffer.getvalue())


BACKEND = '''
import os, zipfile
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "{name}-{version}-{tag}.whl"
    dist = "{name}-{version}.dist-info"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        z.writestr("{name}/__init__.py", "")
        z.writestr(dist + "/METADATA", "Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n")
        z.writestr(dist + "/WHEEL", "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: {tag}\\n")
        z.writestr(dist + "/RECORD", "{name}/__init__.py,,\\n" + dist + "/METADATA,,\\n" + dist + "/WHEEL,,\\n" \
+ dist + "/RECORD,,\\n")
    return name
'''


def make_sdist(directory: Path, name: str, version: str, tag: str = "py3-none-any") -> str:
    """An sdist whose own build backend (no setuptools, no index) makes a wheel with this tag; returns its sha256."""
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": BACKEND.format(name=name, version=version, tag=tag),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, text in files.items():
            info = tarfile.TarInfo(f"{name}-{version}/{path}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    (directory / f"{name}-{version}.tar.gz").write_bytes(buffer.getvalue())
    return sha256(buffer.getvalue())


def lock_of(*entries: tuple[str, str, list[str]]) -> str:
    """A lock in uv's layout: (requirement with its marker, [hashes])."""
    lines = ["# litellm-gateway lock for: test", "# Made by a test; do not edit."]
    for requirement, hashes in entries:
        lines.append(f"{requirement} \\")
        lines += [f"    --hash=sha256:{h}" + (" \\" if i < len(hashes) - 1 else "") for i, h in enumerate(hashes)]
        lines.append("    # via the pins")
    return "\n".join(lines) + "\n"


@pytest.fixture
def index(tmp_path):
    """A directory of made-up wheels, and a lock of them with markers that leave some out on Linux 3.11."""
    source = tmp_path / "index"
    source.mkdir()
    alpha = make_wheel(source, "alpha", "1.0")
    other_file = sha256(b"alpha-1.0 for another platform")
    beta = make_wheel(source, "beta", "2.0")
    old = make_wheel(source, "oldonly", "1.0")
    lock = lock_of(
        ("alpha==1.0", [alpha, other_file]),
        ("beta==2.0 ; python_full_version >= '3.11'", [beta]),
        ("oldonly==1.0 ; python_full_version < '3.11'", [old]),
        ("winonly==1.0 ; sys_platform == 'win32'", ["0" * 64]),
    )
    return source, lock


def offline(source: Path) -> tuple[str, ...]:
    return ("--no-index", "--find-links", str(source))


def test_pip_ignores_the_target_when_it_reads_markers_so_they_are_decided_here():
    # pip download --python-version 3.10 still says "Ignoring tomli: markers ... don't match your environment".
    for target, present, absent in [
        (Target("3.10.12", glibc="2.35"), {"tomli", "exceptiongroup", "async-timeout", "strenum"},
         {"annotated-doc==0.0.7"}),
        (Target("3.11.2"), {"async-timeout", "numpy==2.4.6"}, {"tomli", "exceptiongroup"}),  # Debian 12
        (Target("3.11.7"), {"numpy==2.4.6"}, {"async-timeout", "tomli"}),  # python_full_version < '3.11.3'
        (Target("3.13.5", glibc="2.41"), {"numpy==2.5.5", "annotated-doc==0.0.7"}, {"async-timeout", "tomli"}),
    ]:
        names = ({e.name for e in needed(REAL_LOCK, target)}
                 | {f"{e.name}=={e.version}" for e in needed(REAL_LOCK, target)})
        assert present <= names and not absent & names, target
        assert not {"colorama", "pywin32", "tzdata", "httpx2-jsfetch"} & names  # Windows and emscripten only
        assert {"litellm", "prisma", "hf-xet", "uvloop"} <= names
    assert "hf-xet" not in {e.name for e in needed(REAL_LOCK, Target("3.11.2", machine="ppc64le"))}


def test_the_probe_output_of_a_host_is_its_target_and_other_hosts_are_refused():
    assert HERE.python == ".".join(map(str, sys.version_info[:3])) and HERE.tag.startswith("cp3.")
    assert parse_probe("CPython 3.11.2 x86_64 glibc 2.36 0\n") == Target("3.11.2", "x86_64", "2.36")
    assert parse_probe("CPython 3.13.5 x86_64 glibc 2.41 0\n").tag == "cp3.13.5-x86_64-glibc2.41"
    for output, why in [
        ("CPython 3.12.3 x86_64   0\n", "musl"),  # Alpine: platform.libc_ver() is ('', '')
        ("PyPy 3.10.14 x86_64 glibc 2.36 0\n", "not CPython"),
        ("CPython 3.13.5 x86_64 glibc 2.41 1\n", "free-threaded"),
        ("", "not CPython"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_probe(output)
    with pytest.raises(ValueError, match="full CPython 3 version"):
        Target("3.11")  # the lock has python_full_version markers: 3.11 alone cannot decide them


def test_a_target_takes_every_manylinux_wheel_of_its_glibc_and_older_and_none_newer():
    platforms = Target("3.11.2", glibc="2.36").platforms()
    assert platforms[0] == "manylinux_2_36_x86_64" and "manylinux_2_37_x86_64" not in platforms
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(platforms)
    tags = {str(t) for t in Target("3.11.2").tags}
    assert {"cp311-cp311-manylinux_2_28_x86_64", "cp310-abi3-manylinux_2_28_x86_64", "py3-none-any",
            "py3-none-manylinux2014_x86_64"} <= tags
    assert "cp312-cp312-manylinux_2_28_x86_64" not in tags and "cp311-cp311-musllinux_1_2_x86_64" not in tags


def test_the_cache_is_named_by_the_lock_and_the_target_and_the_set_and_bundle_by_their_content(index, tmp_path):
    source, lock = index
    one = fetch(lock, HERE, tmp_path / "cache", pip_options=offline(source))
    assert one.directory.name.startswith(hashlib.sha256(lock.encode()).hexdigest()[:16] + "-")
    assert one.directory.name.endswith(HERE.tag)
    assert [f.name for f in one.files] == ["alpha-1.0-py3-none-any.whl", "beta-2.0-py3-none-any.whl"]
    assert one.requirements == lock and one.built == ()
    again = fetch(lock, HERE, tmp_path / "elsewhere", pip_options=offline(source))
    assert again.digest == one.digest  # same files: same name, whichever cache
    older = Target("3.10.12", glibc=HERE.glibc, machine=HERE.machine)
    other = fetch(lock, older, tmp_path / "cache", pip_options=offline(source))
    assert other.directory != one.directory and other.digest != one.digest
    assert [f.name for f in other.files] == ["alpha-1.0-py3-none-any.whl", "oldonly-1.0-py3-none-any.whl"]
    first = bundle(one).read_bytes()
    assert bundle(again).read_bytes() == first  # the same bytes, made apart
    with tarfile.open(bundle(one)) as tar:
        members = tar.getmembers()
    assert sorted(m.name for m in members) == sorted([*(f.name for f in one.files), "SHA256SUMS"])
    assert {(m.uid, m.gid, m.uname, m.mode) for m in members} == {(0, 0, "root", 0o644)}


def test_a_full_cache_is_used_without_pip_or_any_network(index, tmp_path, monkeypatch):
    source, lock = index
    cold = fetch(lock, HERE, tmp_path / "cache", pip_options=offline(source))
    archive = bundle(cold)

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(wheels.subprocess, "run", no_subprocess)
    monkeypatch.setenv("PIP_INDEX_URL", DEAD_INDEX)
    source.rename(tmp_path / "gone")
    started = time.perf_counter()
    warm = fetch(lock, HERE, tmp_path / "cache", pip_options=("--index-url", DEAD_INDEX))
    assert time.perf_counter() - started < 1
    assert warm == cold and bundle(warm) == archive


def test_a_damaged_cached_wheel_is_downloaded_again(index, tmp_path):
    source, lock = index
    cold = fetch(lock, HERE, tmp_path / "cache", pip_options=offline(source))
    cold.files[0].write_bytes(b"not the wheel")
    warm = fetch(lock, HERE, tmp_path / "cache", pip_options=offline(source))
    assert warm.digest == cold.digest and warm.files[0].read_bytes() == (source / warm.files[0].name).read_bytes()


def pip_install(directory: Path, requirements: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """What the host runs, into a target directory: no index, only the set, every hash checked."""
    lock = tmp_path / "host-lock.txt"
    lock.write_text(requirements)
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(directory), "--require-hashes",
         "--no-deps", "--target", str(tmp_path / "site"), "-r", str(lock)],
        capture_output=True, text=True, env={**os.environ, "PIP_INDEX_URL": DEAD_INDEX},
    )


def test_a_pure_python_package_with_only_an_sdist_is_built_here_and_its_wheel_hash_given_to_the_host(index, tmp_path):
    source, _ = index
    alpha = sha256((source / "alpha-1.0-py3-none-any.whl").read_bytes())
    lock = lock_of(("alpha==1.0", [alpha]), ("puresdist==1.0", [make_sdist(source, "puresdist", "1.0")]))
    got = fetch(lock, HERE, tmp_path / "cache", pip_options=offline(source))
    assert got.built == ("puresdist==1.0",)
    assert [f.name for f in got.files] == ["alpha-1.0-py3-none-any.whl", "puresdist-1.0-py3-none-any.whl"]
    built = sha256(got.files[1].read_bytes())
    assert got.requirements.count(built) == 1 \
        and got.requirements.replace(f" \\\n    --hash=sha256:{built}", "") == lock
    # The lock alone does not let the host install the wheel built here; the set's requirements do.
    refused = pip_install(got.directory, lock, tmp_path)
    assert refused.returncode != 0 and "DO NOT MATCH THE HASHES" in refused.stderr
    installed = pip_install(got.directory, got.requirements, tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / "site" / "puresdist" / "__init__.py").is_file()
    # Another target gets the same built wheel (one build per package), and the cache is kept.
    older = fetch(lock, Target("3.10.12", glibc="2.35"), tmp_path / "cache", pip_options=offline(source))
    assert built in older.requirements and older.built == ("puresdist==1.0",)
    assert fetch(lock, HERE, tmp_path / "cache", pip_options=("--index-url", DEAD_INDEX)) == got


def test_a_compiled_package_with_only_an_sdist_is_refused_naming_it_and_the_fix(tmp_path):
    source = tmp_path / "index"
    source.mkdir()
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}-cp{sys.version_info[0]}{sys.version_info[1]}-linux_x86_64"
    lock = lock_of(("cext==1.0", [make_sdist(source, "cext", "1.0", tag=tag)]))
    with pytest.raises(FetchError, match=r"cext==1.0 has no wheel for .* is not pure Python.*Fix: pin a version"):
        fetch(lock, HERE, tmp_path / "cache", pip_options=offline(source))
    assert not any((tmp_path / "cache").glob(f"*{HERE.tag}"))


def test_a_package_the_index_does_not_have_is_named_with_the_fix(index, tmp_path):
    source, lock = index
    lock += lock_of(("ghost==3.0", ["1" * 64])).split("\n", 2)[2]
    with pytest.raises(FetchError, match=r"ghost==3.0 is not on the package index .*Fix: check the index pip uses"):
        fetch(lock, HERE, tmp_path / "cache", pip_options=offline(source))


def test_an_unreachable_index_is_said_so_naming_the_package_and_the_fix(index, tmp_path):
    _, lock = index
    with pytest.raises(FetchError,
                       match=r"cannot download alpha==1.0 .*not reachable.*Fix: let the control machine reach PyPI"):
        fetch(lock, HERE, tmp_path / "cache", pip_options=("--index-url", DEAD_INDEX, "--retries", "1"))


def test_the_host_unpacks_a_checked_archive_once_and_installs_with_no_index(index, tmp_path, monkeypatch):
    source, lock = index
    got = fetch(lock, HERE, tmp_path / "cache", pip_options=offline(source))
    venv = "/opt/litellm"
    commands = install_commands(got, venv, "/opt/litellm/requirements.pending")
    pip = commands[3]
    assert pip.startswith(f"{venv}/bin/pip install ") and pip.endswith(" -r /opt/litellm/requirements.pending")
    for option in ("--no-index", f"--find-links {wheels.HOST_WHEELS}/{got.digest}", "--require-hashes", "--no-deps"):
        assert option in pip
    if os.geteuid() != 0:
        pytest.skip("the unpacking commands make root-owned directories")
    monkeypatch.setattr(wheels, "HOST_WHEELS", str(tmp_path / "host"))
    unpack = install_commands(got, venv, "unused")[:3]
    archive = Path(wheels.host_archive(got))
    subprocess.run(unpack[0], shell=True, check=True)
    archive.write_bytes(bundle(got).read_bytes()[:-20000])  # an upload cut short
    assert subprocess.run(unpack[1], shell=True, capture_output=True).returncode != 0
    assert not (tmp_path / "host" / got.digest).exists()
    archive.write_bytes(bundle(got).read_bytes())
    for command in unpack:
        subprocess.run(command, shell=True, check=True)
    unpacked = tmp_path / "host" / got.digest
    assert sorted(p.name for p in unpacked.iterdir()) == sorted([*(f.name for f in got.files), "SHA256SUMS"])
    assert {oct(p.stat().st_mode & 0o777) for p in unpacked.iterdir()} == {"0o644"} and not archive.exists()
    assert pip_install(unpacked, got.requirements, tmp_path).returncode == 0
