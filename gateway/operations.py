"""pyinfra facts and operations the stock ones don't cover: a pinned virtualenv and a secret env file.

Both follow pyinfra's own style: read facts, yield commands only when the state differs, call
`host.noop` otherwise, so a second deploy changes nothing.
"""
from __future__ import annotations

import hashlib
import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation
from pyinfra.facts.files import File, Sha256File

from gateway.settings import WEAK_KEYS

KEY_VAR = "LITELLM_MASTER_KEY"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
WEAK_KEY_HASHES = {hashlib.sha256(k.encode()).hexdigest() for k in WEAK_KEYS}
MIN_KEY_LENGTH = 35  # "sk-" and at least 32 characters


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class EnvFileState(FactBase):
    """What the deploy needs to know of a secret env file, without reading the secret back.

    Returns None when the file is missing, else a dict: `settings_sha256` (every line but the key
    line), `key_sha256` and `key_length` of the key's value, and `mode`, `user`, `group`.
    """

    def command(self, path: str) -> str:
        p = shlex.quote(path)
        return (
            f"if [ -f {p} ]; then "
            f"grep -v '^{KEY_VAR}=' {p} | sha256sum | cut -d' ' -f1; "
            f"sed -n 's/^{KEY_VAR}=//p' {p} | head -n1 | tr -d '\\n' | sha256sum | cut -d' ' -f1; "
            f"sed -n 's/^{KEY_VAR}=//p' {p} | head -n1 | tr -d '\\n' | wc -c; "
            f"stat -c '%a %U %G' {p}; "
            "else echo missing; fi"
        )

    def process(self, output: list[str]) -> dict | None:
        if not output or output[0] == "missing":
            return None
        mode, user, group = output[3].split()
        return {
            "settings_sha256": output[0],
            "key_sha256": output[1],
            "key_length": int(output[2]),
            "mode": mode,
            "user": user,
            "group": group,
        }


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
        # With sudo pyinfra uploads through a temporary file: create it 0600 for the SSH user first.
        temp = host.get_temp_filename(path)
        yield f'install -m 600 -o "${{SUDO_USER:-$(id -un)}}" /dev/null {shlex.quote(temp)}'
        yield FileUploadCommand(StringIO(f"{KEY_VAR}={master_key}\n{settings_text}"), f"{path}.new", remote_temp_filename=temp)
        yield f"rm -f {shlex.quote(temp)}"
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
        yield FileUploadCommand(StringIO(settings_text), f"{path}.settings")
        yield f"cat {shlex.quote(path + '.settings')} >> {new} && rm -f {shlex.quote(path + '.settings')}"
    yield f"mv -f {new} {dest}"


@operation()
def pinned_virtualenv(path: str, requirements: str, python: str = "python3"):
    """
    Keep a virtualenv holding exactly these pinned requirements; reinstall only when they change.

    + path: the virtualenv directory (owned by root: the service cannot change its own code)
    + requirements: the pip requirements file, exact pins only
    + python: the interpreter that creates the virtualenv

    ``requirements.txt`` inside the virtualenv is written only after pip succeeded, so a failed or
    interrupted install is retried by the next deploy.
    """
    marker = f"{path}/requirements.txt"
    if host.get_fact(Sha256File, path=marker) == sha256(requirements):
        host.noop(f"{path} holds the pinned requirements")
        return
    venv = shlex.quote(path)
    pending = shlex.quote(f"{path}/requirements.pending")
    yield f"test -x {venv}/bin/pip || {python} -m venv {venv}"
    yield FileUploadCommand(StringIO(requirements), f"{path}/requirements.pending")
    # pip byte-compiles on one core, a third of an install this size; compileall uses every core.
    # Compiled now because the service cannot write .pyc files into its read-only venv.
    yield (
        f"{venv}/bin/pip install --quiet --no-input --disable-pip-version-check --no-compile "
        f"--upgrade-strategy only-if-needed -r {pending}"
    )
    # Like pip, a module that does not compile (e.g. a stray test file) is no reason to fail.
    yield f"{venv}/bin/python -m compileall -q -j 0 {venv}/lib >/dev/null || true"
    yield f"mv -f {pending} {shlex.quote(marker)}"


@operation()
def validated_file(path: str, content: str, validate: str, user: str, group: str, mode: int):
    """
    Put a whole file in place only after a command accepts a staged copy of it.

    + path: the file on the host
    + content: its whole text (rendered, deterministic)
    + validate: command run on the staged copy; ``{path}`` in it is replaced by that copy's path
      (the command quotes it, as validate_command does)
    + user, group, mode: owner and octal mode (e.g. 640) of the file

    The copy is staged beside the file (so relative references resolve the same way); when the
    command refuses it, the operation fails and the file in place, and what reads it, are untouched.
    """
    info = host.get_fact(File, path=path)
    same = info and host.get_fact(Sha256File, path=path) == sha256(content)
    if same and (info["user"], info["group"], info["mode"]) == (user, group, mode):
        host.noop(f"{path} is up to date")
        return
    staged = f"{path}.staged"
    quoted = shlex.quote(staged)
    yield f"install -m {mode} -o {shlex.quote(user)} -g {shlex.quote(group)} /dev/null {quoted}"
    yield FileUploadCommand(StringIO(content), staged)
    yield validate.replace("{path}", staged)  # the command quotes its own arguments
    yield f"mv -f {quoted} {shlex.quote(path)}"
