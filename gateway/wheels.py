"""The lock's wheels, fetched once on the control machine, so that no gateway host needs PyPI.

`fetch` downloads the wheels one kind of host needs from a lock (gateway/lock.py) into a cache on
the control machine, hash-checked against the lock; `bundle` makes them one archive, uploaded
once per host; `install_commands` unpacks it on the host and installs with
`pip install --no-index --find-links DIR --require-hashes --no-deps -r LOCK`: the host gets only
files whose hashes the lock names, from no index at all.

The kind of host (`Target`) is read from the host by one cheap command (`probe_command`).
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

DEFAULT_CACHE = Path("~/.cache/litellm-gateway/wheels")
HOST_WHEELS = "/var/cache/litellm-gateway/wheels"
MANIFEST = "SHA256SUMS"  # `sha256sum -c` reads it: the host checks an unpacked archive with it
REQUIREMENTS = "requirements.txt"
# The host's kernel and OS release are unknown here: a lock marker on them cannot be decided.
_UNDECIDABLE = ("platform_release", "platform_version")


class FetchError(RuntimeError):
    """The wheels of a lock could not be had for a host; the message names the package and the fix."""


@dataclass(frozen=True)
class Target:
    """What picks a host's wheels and decides the lock's markers: its CPython, CPU and glibc.

    The full Python version, not just 3.11: the lock has markers like python_full_version < '3.11.3'.
    """

    python: str  # full CPython version, e.g. "3.11.2"
    machine: str = "x86_64"  # platform.machine()
    glibc: str = "2.36"  # the oldest manylinux wheels are for glibc 2.5

    def __post_init__(self) -> None:
        if not re.fullmatch(r"3\.\d+\.\d+(?:(?:a|b|rc)\d+)?", self.python):
            raise ValueError(f"python version {self.python!r}: expected a full CPython 3 version like 3.11.2")
        if not re.fullmatch(r"[a-z0-9_]+", self.machine):
            raise ValueError(f"machine {self.machine!r}: expected what platform.machine() says, like x86_64")
        if not re.fullmatch(r"2\.\d+", self.glibc) or int(self.glibc.split(".")[1]) < 5:
            raise ValueError(f"glibc {self.glibc!r}: expected a glibc version from 2.5 on, like 2.36")

    @property
    def tag(self) -> str:
        """A name for the target in cache paths, e.g. cp3.11.2-x86_64-glibc2.36."""
        return f"cp{self.python}-{self.machine}-glibc{self.glibc}"

    @property
    def short_python(self) -> str:
        return ".".join(self.python.split(".")[:2])

    def environment(self) -> dict[str, str]:
        """The marker environment of the host: pip evaluates markers for the machine it runs on, not the target."""
        return {
            "implementation_name": "cpython",
            "implementation_version": self.python,
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_system": "Linux",
            "python_full_version": self.python,
            "python_version": self.short_python,
            "sys_platform": "linux",
        }

    def platforms(self) -> list[str]:
        """Every platform tag the host's pip accepts, best first (pip's --platform does not expand manylinux_2_X)."""
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        found = []
        for minor in range(int(self.glibc.split(".")[1]), 4, -1):
            found.append(f"manylinux_2_{minor}_{self.machine}")
            if minor in legacy:
                found.append(f"{legacy[minor]}_{self.machine}")
        return [*found, f"linux_{self.machine}"]

    @cached_property
    def tags(self) -> list[Tag]:
        """The wheel tags the host accepts, best first."""
        version = tuple(int(p) for p in self.short_python.split("."))
        interpreter = f"cp{version[0]}{version[1]}"
        return [
            *cpython_tags(version, abis=[interpreter], platforms=self.platforms()),
            *compatible_tags(version, interpreter, self.platforms()),
        ]

    def pip_options(self) -> list[str]:
        """pip's options that make it pick wheels for the host instead of this machine."""
        nodot = self.short_python.replace(".", "")
        options = ["--python-version", self.python, "--implementation", "cp", "--abi", f"cp{nodot}"]
        for platform in self.platforms():
            options += ["--platform", platform]
        return options


def probe_command(python: str = "python3") -> str:
    """The one-line shell command whose output, read by `parse_probe`, is the host's `Target`."""
    code = (
        "import platform,sysconfig; print(platform.python_implementation(), platform.python_version(), "
        'platform.machine(), *platform.libc_ver(), sysconfig.get_config_var("Py_GIL_DISABLED") or 0)'
    )
    return f"{python} -c {shlex.quote(code)}"


def parse_probe(output: str) -> Target:
    """The `Target` that `probe_command` printed; ValueError for a host the lock's wheels are not for."""
    words = output.split()
    if not words or words[0] != "CPython":
        raise ValueError(f"the host's python3 is not CPython: {output.strip()!r}")
    if len(words) != 6 or words[3] != "glibc":
        raise ValueError(f"the host's python3 does not run on glibc (musl?), which the wheels need: "
                         f"{output.strip()!r}")
    if words[5] != "0":
        raise ValueError(f"the host's python3 is a free-threaded build, which the wheels are not for: "
                         f"{output.strip()!r}")
    return Target(python=words[1].rstrip("+"), machine=words[2], glibc=words[4])


@dataclass(frozen=True)
class Locked:
    """One entry of the lock: a package at one version, when its marker holds, and the hashes of all its files."""

    name: str  # canonical
    version: str
    marker: Marker | None
    hashes: frozenset[str]

    def line(self) -> str:
        """This entry as a requirements line, its marker already decided (pip would decide it for this machine)."""
        return f"{self.name}=={self.version} " + " ".join(f"--hash=sha256:{h}" for h in sorted(self.hashes))


def parse_lock(lock_text: str) -> list[Locked]:
    """The entries of a lock made by `uv pip compile --generate-hashes`; ValueError on anything else."""
    entries = []
    for line in lock_text.replace("\\\n", " ").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        hashes = re.findall(r"--hash=(\S+)", line)
        spec = re.sub(r"\s--hash=\S+", "", line).strip()
        try:
            requirement = Requirement(spec)
        except InvalidRequirement as error:
            raise ValueError(f"not a lock entry: {line.strip()!r} ({error})") from None
        pins = list(requirement.specifier)
        if requirement.url or len(pins) != 1 or pins[0].operator != "==" or "*" in pins[0].version:
            raise ValueError(f"not a lock entry (one exact version): {spec!r}")
        if not hashes or any(not re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes):
            raise ValueError(f"{spec!r} has no sha256 hashes: not a lock made with --generate-hashes")
        entries.append(Locked(canonicalize_name(requirement.name), pins[0].version, requirement.marker,
                              frozenset(h.split(":", 1)[1] for h in hashes)))
    return entries


def needed(lock_text: str, target: Target) -> list[Locked]:
    """The lock's entries whose markers hold on the target: what its pip will install."""
    wanted: dict[str, Locked] = {}
    for entry in parse_lock(lock_text):
        if entry.marker is not None:
            if any(name in str(entry.marker) for name in _UNDECIDABLE):
                raise ValueError(f"{entry.name}: marker '{entry.marker}' depends on the host's kernel; "
                                 "not decidable here")
            if not entry.marker.evaluate(target.environment()):
                continue
        if entry.name in wanted:
            raise ValueError(f"the lock names {entry.name} twice for {target.tag}")
        wanted[entry.name] = entry
    return list(wanted.values())


@dataclass(frozen=True)
class WheelSet:
    """The wheels one kind of host installs from a lock, in the cache, and what to install them with."""

    directory: Path
    files: tuple[Path, ...]
    digest: str  # names the set: the sha256 of its SHA256SUMS, first 16 hex digits
    requirements: str  # the lock, plus the hash of each wheel built here from an sdist (`built`)
    built: tuple[str, ...]  # "name==version" of packages with no wheel on the index, built here

    @property
    def size(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def fetch(lock_text: str, target: Target, cache_dir: Path = DEFAULT_CACHE, *,
          pip_options: Sequence[str] = ()) -> WheelSet:
    """The target's wheels of the lock, from the cache or else downloaded (and kept) with pip.

    A complete cached set is checked against its hashes and the lock, and pip is not run at all.
    `pip_options` go to every pip run (e.g. --index-url); pip's own configuration applies too:
    every file is hash-checked, whichever index served it.
    """
    cache_dir = Path(cache_dir).expanduser()
    wanted = needed(lock_text, target)
    directory = cache_dir / f"{hashlib.sha256(lock_text.encode()).hexdigest()[:16]}-{target.tag}"
    cached = _load(directory, wanted, target)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-") as work:
        wheels = Path(work) / "wheels"
        wheels.mkdir()
        built = _download(wanted, target, wheels, cache_dir / "built", list(pip_options))
        (wheels / REQUIREMENTS).write_text(_with_hashes(lock_text, built))
        (wheels / MANIFEST).write_text(
            "".join(f"{_sha256(f)}  {f.name}\n" for f in sorted(wheels.glob("*.whl")))
        )
        if _load(directory, wanted, target) is None:  # else another deploy has just made it
            if directory.exists():  # incomplete or damaged: replaced whole
                shutil.rmtree(directory)
            wheels.rename(directory)
    loaded = _load(directory, wanted, target)
    if loaded is None:
        raise FetchError(f"the wheels downloaded into {directory} do not match the lock for {target.tag}")
    return loaded


def bundle(wheels: WheelSet) -> Path:
    """One archive of the set (uncompressed: wheels are zip files), kept beside the cache, same bytes every time."""
    archive = wheels.directory.parent / "bundles" / f"{wheels.digest}.tar"
    if archive.is_file():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=archive.parent, prefix=".bundle-", delete=False) as out:
        try:
            with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for path in [*wheels.files, wheels.directory / MANIFEST]:
                    info = tar.gettarinfo(str(path), arcname=path.name)
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    info.mode, info.mtime = 0o644, 0
                    with path.open("rb") as data:
                        tar.addfile(info, data)
            os.replace(out.name, archive)
        except BaseException:
            os.unlink(out.name)
            raise
    return archive


def host_archive(wheels: WheelSet) -> str:
    """Where the archive is uploaded on the host (inside HOST_WHEELS: make it first, see `install_commands`)."""
    return f"{HOST_WHEELS}/{wheels.digest}.tar"


def install_commands(wheels: WheelSet, venv: str, requirements: str) -> list[str]:
    """The host's commands after uploading `bundle(wheels)` to `host_archive(wheels)`.

    The first one (making HOST_WHEELS) must run before the upload. The archive is unpacked into
    HOST_WHEELS/<digest>/ (root, 0755; wheels 0644) only once its SHA256SUMS checks, so an upload
    cut short is never taken for the set; `requirements` is the host's copy of `wheels.requirements`.
    Other sets are removed once the install succeeded.
    """
    directory = f"{HOST_WHEELS}/{wheels.digest}"
    d, new, archive, req = (shlex.quote(p) for p in (directory, directory + ".new", host_archive(wheels), requirements))
    return [
        f"install -d -m 0755 -o root -g root {HOST_WHEELS}",
        f"test -d {d} || {{ rm -rf {new} && install -d -m 0755 -o root -g root {new} && "
        f"tar -xf {archive} -C {new} --no-same-owner && chmod 0644 {new}/* && "
        f"(cd {new} && sha256sum --quiet --strict -c {MANIFEST}) && mv {new} {d}; }}",
        f"rm -f {archive}",
        pip_install_command(wheels, venv, requirements),
        f"find {HOST_WHEELS} -mindepth 1 -maxdepth 1 ! -name {shlex.quote(wheels.digest)} -exec rm -rf {{}} +",
    ]


def pip_install_command(wheels: WheelSet, venv: str, requirements: str) -> str:
    """The host's pip install of the unpacked set into `venv`: only the files the lock names, no index, no
    resolving (--no-deps), so no release on any registry can change what a host gets."""
    return (f"{shlex.quote(venv)}/bin/pip install --quiet --no-input --disable-pip-version-check --no-compile "
            f"--no-index --find-links {shlex.quote(f'{HOST_WHEELS}/{wheels.digest}')} --require-hashes --no-deps "
            f"-r {shlex.quote(requirements)}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _load(directory: Path, wanted: list[Locked], target: Target) -> WheelSet | None:
    """The cached set in `directory` if it is complete and every file is the one the lock (or a build) names."""
    try:
        manifest = (directory / MANIFEST).read_text()
        requirements = (directory / REQUIREMENTS).read_text()
    except FileNotFoundError:
        return None
    try:
        allowed = {e.name: e.hashes for e in needed(requirements, target)}
    except ValueError:
        return None
    by_name = {e.name: e for e in wanted}
    files: dict[str, Path] = {}
    for line in manifest.splitlines():
        sha, name = line.split("  ", 1)
        path = directory / name
        try:
            project, version, _, tags = parse_wheel_filename(name)
        except InvalidWheelFilename:
            return None
        entry = by_name.get(project)
        if (entry is None or project in files or Version(entry.version) != version
                or sha not in allowed.get(project, ()) or tags.isdisjoint(target.tags)
                or not path.is_file() or _sha256(path) != sha):
            return None
        files[project] = path
    if files.keys() != by_name.keys():
        return None
    built = tuple(f"{e.name}=={e.version}" for e in wanted if not allowed[e.name] <= e.hashes)
    return WheelSet(directory, tuple(sorted(files.values())),
                    hashlib.sha256(manifest.encode()).hexdigest()[:16], requirements, built)


def _pip(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *arguments],
                          capture_output=True, text=True)


def _requirements_file(directory: Path, entries: list[Locked]) -> str:
    path = directory / "wanted.txt"
    path.write_text("".join(e.line() + "\n" for e in entries))
    return str(path)


_NETWORK = re.compile(r"Retrying \(Retry\(|Max retries exceeded|NewConnectionError|Failed to establish|"
                      r"Name or service not known|Temporary failure in name resolution|SSLError|ProxyError|ReadTimeout")
_NETWORK_REASON = re.compile(r"Failed to establish a new connection: [^')\"]*|Name or service not known|"
                             r"Temporary failure in name resolution|SSLError\([^)]*|ProxyError\([^)]*|Read timed out")


def _failure(result: subprocess.CompletedProcess[str], target: Target, what: str) -> FetchError:
    """pip's failure, said with the package and the fix."""
    last = ([line for line in result.stderr.splitlines() if line.startswith("ERROR:")][-1:]
            or result.stderr.splitlines()[-1:])
    detail = last[0] if last else f"pip exited with {result.returncode}"
    if _NETWORK.search(result.stderr):
        reason = _NETWORK_REASON.findall(result.stderr)
        indexes = re.findall(r"^Looking in indexes: (.*)$", result.stdout, re.M)
        detail = "; ".join([*reason[-1:], *(f"index {i}" for i in indexes[:1])]) or detail
        return FetchError(
            f"cannot download {what} for {target.tag}: the package index is not reachable from this machine "
            f"({detail}). Fix: let the control machine reach PyPI (or a mirror: set pip's index-url, e.g. "
            "PIP_INDEX_URL), then deploy again; the hosts themselves need no index"
        )
    if "DO NOT MATCH THE HASHES" in result.stderr:
        return FetchError(f"the index served a file of {what} whose hash the lock does not name ({detail}); "
                          "nothing was installed. Fix: check the index (or mirror) pip uses")
    return FetchError(f"cannot download {what} for {target.tag}: {detail}")


def _download(wanted: list[Locked], target: Target, dest: Path, built_dir: Path, options: list[str]) -> dict[str, str]:
    """Download the target's wheels into `dest`; build the pure-Python ones the index has only as sdists.

    Returns the sha256 of each wheel built here, by "name==version": the lock cannot name them.
    """
    pending = list(wanted)
    built: dict[str, str] = {}
    while pending:
        result = _pip(["download", "--no-deps", "--only-binary=:all:", "--dest", str(dest), *target.pip_options(),
                       *options, "-r", _requirements_file(dest.parent, pending)])
        if result.returncode == 0:
            return built
        missing = re.findall(r"No matching distribution found for (\S+)", result.stderr)
        entry = next((e for e in pending if missing and f"{e.name}=={e.version}" == missing[-1]), None)
        if entry is None or _NETWORK.search(result.stderr):
            raise _failure(result, target, missing[-1] if missing else "the lock's wheels")
        wheel = _build(entry, target, built_dir, options)
        shutil.copy2(wheel, dest / wheel.name)
        built[f"{entry.name}=={entry.version}"] = _sha256(wheel)
        pending.remove(entry)
    return built


def _build(entry: Locked, target: Target, built_dir: Path, options: list[str]) -> Path:
    """A py3-none-any wheel built here from the package's hash-checked sdist, kept for every target; else FetchError."""
    what = f"{entry.name}=={entry.version}"
    keep = built_dir / f"{entry.name}-{entry.version}"
    if not keep.is_dir():
        built_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=built_dir, prefix=".build-") as work:
            out = Path(work) / "out"
            result = _pip(["wheel", "--no-deps", "--no-binary", entry.name, "--wheel-dir", str(out), *options,
                           "-r", _requirements_file(Path(work), [entry])])
            if result.returncode != 0:
                if _NETWORK.search(result.stderr) or "DO NOT MATCH THE HASHES" in result.stderr:
                    raise _failure(result, target, what)
                if "(from versions: none)" in result.stderr:
                    raise FetchError(f"{what} is not on the package index pip uses here, or that index is unreachable "
                                     "(pip found no file of it at all). Fix: check the index pip uses on this machine "
                                     "(`pip config list`, PIP_INDEX_URL) and that it reaches PyPI, then deploy again")
                raise FetchError(f"{what} has no wheel for {target.tag} on the index, and its sdist did not build "
                                 f"here ({_failure(result, target, what)}). Its build tools (build-system.requires) "
                                 "come from the index at their newest release, so a new release of one of them may "
                                 f"be what changed. Fix: pin a version of {entry.name} that has wheels "
                                 "(litellm_extra_requirements) and make the lock again (python -m gateway.lock)")
            try:
                out.rename(keep)
            except OSError:
                if not keep.is_dir():
                    raise
                # another deploy on this machine built it at the same time: theirs is kept
    [wheel] = keep.glob("*.whl")
    tags = parse_wheel_filename(wheel.name)[3]
    if not all(t.abi == "none" and t.platform == "any" for t in tags) or tags.isdisjoint(target.tags):
        raise FetchError(f"{what} has no wheel for {target.tag} on the index and is not pure Python "
                         f"(its build here is {wheel.name}): it would have to be compiled on each host. Fix: pin a "
                         f"version of {entry.name} that has wheels for the host (litellm_extra_requirements) and make "
                         "the lock again (python -m gateway.lock)")
    return wheel


def _with_hashes(lock_text: str, extra: dict[str, str]) -> str:
    """The lock with one more hash on each package built here, so the host's --require-hashes accepts its wheel."""
    if not extra:
        return lock_text
    out, current = [], None
    for line in lock_text.splitlines():
        if line[:1].isalnum():
            name, version = re.match(r"([^=;\s\[]+)(?:\[[^\]]*\])?==([^;\s]+)", line).groups()
            current = f"{canonicalize_name(name)}=={version}"
        if current in extra and "--hash=" in line and not line.endswith("\\"):
            out += [line + " \\", f"    --hash=sha256:{extra[current]}"]
            continue
        out.append(line)
    return "\n".join(out) + ("\n" if lock_text.endswith("\n") else "")
