"""pyinfra operations the stock ones don't cover: a service account that is never someone else's, a
pinned virtualenv, whole files from the managed-files table (staged, checked, moved in place), a
secret env file.

They follow pyinfra's own style: read facts, yield commands only when the state differs, call
`host.noop` otherwise, so a second deploy changes nothing.
"""
from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationError, StringCommand, operation
from pyinfra.facts.files import Sha256File

from gateway import account, wheels
from gateway.facts import KEY_VAR, Account, EnvFileState, PythonTarget
from gateway.services.base import ManagedFile, commit_commands, stage_command, staged
from gateway.settings import WEAK_KEYS

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
WEAK_KEY_HASHES = {hashlib.sha256(k.encode()).hexdigest() for k in WEAK_KEYS}
MIN_KEY_LENGTH = 35  # "sk-" and at least 32 characters


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def upload(data: bytes, path: str) -> Iterator:
    """Upload into `path`, which must exist with its owner and mode. With sudo, pyinfra goes through a
    temporary file: it gets a random name and is created 0600 for the SSH user before a byte is
    written, so nobody else on the host can read or swap it on the way."""
    temp = host.get_temp_filename()  # uuid4-based, not predictable
    yield f'install -m 600 -o "${{SUDO_USER:-$(id -un)}}" /dev/null {shlex.quote(temp)}'
    yield FileUploadCommand(BytesIO(data), path, remote_temp_filename=temp)
    yield f"rm -f {shlex.quote(temp)}"


@operation()
def secret_env_file(path: str, settings_text: str, master_key: str | None = None):
    """
    Keep an environment file of settings plus a master key, 0600 root:root, the key never shown.

    + path: the file on the host
    + settings_text: every line but the key line (rendered, deterministic)
    + master_key: the key to hold; None keeps the key already on the host, or generates one
      there (``sk-`` and 64 hex digits) when there is none or it is weak

    The key never appears in a command, a fact or a diff: an operator key is uploaded into a file
    created 0600 beforehand; a generated one never leaves the host.
    """
    state = host.get_fact(EnvFileState, path=path)
    settings_ok = state is not None and state["settings_sha256"] == sha256(settings_text)
    owner_ok = state is not None and (state["mode"], state["user"], state["group"]) == ("600", "root", "root")
    if master_key is not None:
        key_ok = state is not None and state["key_sha256"] == sha256(master_key)
    else:
        key_ok = (
            state is not None
            and state["key_sha256"] != EMPTY_SHA256
            and state["key_sha256"] not in WEAK_KEY_HASHES
            and state["key_length"] >= MIN_KEY_LENGTH
        )
    if settings_ok and owner_ok and key_ok:
        host.noop(f"{path} is up to date")
        return

    new = shlex.quote(f"{path}.new")
    dest = shlex.quote(path)
    yield f"install -m 600 -o root -g root /dev/null {new}"
    if master_key is not None:
        yield from upload(f"{KEY_VAR}={master_key}\n{settings_text}".encode(), f"{path}.new")
    else:
        # Keep the key on the host unless it is missing or weak; then generate one there.
        weak = " ".join(sorted(WEAK_KEY_HASHES))
        yield StringCommand(
            "sh", "-c",
            shlex.quote(
                f"key=$(sed -n 's/^{KEY_VAR}=//p' {dest} 2>/dev/null | head -n1); "
                f"sum=$(printf %s \"$key\" | sha256sum | cut -d' ' -f1); "
                f"case \" {weak} \" in *\" $sum \"*) key=;; esac; "
                f"[ ${{#key}} -ge {MIN_KEY_LENGTH} ] || key=sk-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \\n'); "
                f"printf '{KEY_VAR}=%s\\n' \"$key\" > {new}"
            ),
        )
        yield from upload(settings_text.encode(), f"{path}.settings")
        yield f"cat {shlex.quote(path + '.settings')} >> {new} && rm -f {shlex.quote(path + '.settings')}"
    yield f"mv -f {new} {dest}"


@operation()
def pinned_virtualenv(path: str, requirements: str, wheel_cache: str, index_url: str | None = None,
                      python: str = "python3"):
    """
    Keep a virtualenv holding exactly the packages of a lock; install only when it does not yet.

    + path: the virtualenv directory (owned by root: the service cannot change its own code)
    + requirements: the lock (gateway/lock.py): every package, exact versions and hashes
    + wheel_cache: the control machine's cache of the lock's wheels (gateway/wheels.py)
    + index_url: a PyPI mirror the host installs from instead; None: the wheels come from the
      control machine and the host's pip uses no index at all
    + python: the interpreter that creates the virtualenv

    pip installs with hash checking and without resolving anything itself (--no-deps): what the
    lock says is what the host gets, whenever it is deployed and wherever the files came from.

    ``requirements.txt`` inside the virtualenv is written only after pip succeeded, so a failed or
    interrupted install is redone by the next deploy.
    """
    marker = f"{path}/requirements.txt"
    if host.get_fact(Sha256File, path=marker) == sha256(requirements):
        host.noop(f"{path} holds the pinned requirements")
        return
    wanted = None
    if not index_url:
        # Before the first command: pyinfra runs this far while preparing, so a host whose wheels
        # cannot be had stops the run before any host changes. Warm, this only re-hashes the cache.
        try:
            wanted = wheels.fetch(requirements, host.get_fact(PythonTarget), Path(wheel_cache))
            archive = wheels.bundle(wanted)
        except (wheels.FetchError, ValueError, OSError) as error:
            raise OperationError(f"the wheels of {path} for {host.name}: {error}") from None
    venv = shlex.quote(path)
    pending = f"{path}/requirements.pending"
    yield f"test -x {venv}/bin/pip || {python} -m venv {venv}"
    yield f"install -m 644 -o root -g root /dev/null {shlex.quote(pending)}"
    pip = (f"{venv}/bin/pip install --quiet --no-input --disable-pip-version-check --no-compile --require-hashes "
           "--no-deps")
    if wanted is None:
        yield from upload(requirements.encode(), pending)
        yield f"{pip} --index-url {shlex.quote(index_url)} -r {shlex.quote(pending)}"
    else:
        # The lock, plus the hash of any wheel built on the control machine from a pure-Python sdist.
        yield from upload(wanted.requirements.encode(), pending)
        make_dir, unpack, remove_archive, install, prune = wheels.install_commands(wanted, path, pending)
        yield make_dir
        yield FileUploadCommand(str(archive), wheels.host_archive(wanted))
        yield unpack
        yield remove_archive
        yield install
        yield prune
    # Installed without resolving: pip check then proves the lock holds every requirement of every
    # package (extras included) at a version that meets it, before the release can ever serve.
    yield f"{venv}/bin/python -m pip check --disable-pip-version-check"
    # pip byte-compiles on one core, a third of an install this size; compileall uses every core.
    # Compiled now because the service cannot write .pyc files into its read-only venv.
    # Like pip, a module that does not compile (e.g. a stray test file) is no reason to fail.
    yield f"{venv}/bin/python -m compileall -q -j 0 {venv}/lib >/dev/null || true"
    yield f"install -m 644 -o root -g root /dev/null {shlex.quote(marker)}.new"
    yield from upload(requirements.encode(), f"{marker}.new")
    yield f"mv -f {shlex.quote(marker)}.new {shlex.quote(marker)} && rm -f {shlex.quote(pending)}"


@operation()
def system_account(want: account.Wanted):
    """
    Keep a system group and a system user in it: these ids, this home (not created), this shell,
    marked as the deploy's own. Never takes over an account that is not evidently its own.

    + want: the user, group, uid, gid, home and shell (gateway.account.Wanted)

    tasks/account.py refuses a foreign account while preparing, before any host changes; this
    refuses again, should the host have changed since.
    """
    current = host.get_fact(Account, user=want.user, group=want.group, uid=want.uid, gid=want.gid)
    refused = account.problems(current, want)
    if refused:
        raise OperationError("; ".join(refused) + "; " + want.fix())
    steps = account.commands(current, want)
    if not steps:
        host.noop(f"user {want.user} and group {want.group} are as wanted")
    yield from steps


@operation()
def whole_file(file: ManagedFile, present: dict | None):
    """
    Keep a whole file of the managed-files table: its content, owner, group and mode; replaced in
    one move, never edited.

    + file: the table's row (gateway.services.base.ManagedFile)
    + present: what ManagedFiles found at its path while preparing (None: missing)

    The new content is staged beside the file with its owner and mode set before a byte is written
    (gateway/services/base.py: the same install `fab keys.push` uses). When the row's check refuses it, the
    operation fails and the file in place, and what reads it, are untouched. With no file in place
    yet (a first deploy) there is nothing to protect: the copy goes in unchecked, and what first
    reads it checks it (for config.yaml: the service's start and the deploy's verification, which
    fails with the journal's lines), sparing a first deploy the check's ~7 s.
    """
    if present == {"user": file.user, "group": file.group, "mode": file.mode, "sha256": file.sha256}:
        host.noop(f"{file.path} is up to date")
        return
    yield stage_command(file)
    yield from upload(file.content, staged(file.path))
    yield from commit_commands(file, check=present is not None)
