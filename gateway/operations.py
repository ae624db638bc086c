"""pyinfra facts and operations the stock ones don't cover: a service account, a pinned virtualenv,
whole files checked against one snapshot (and validated before they replace a live one), a secret
env file.

They follow pyinfra's own style: read facts, yield commands only when the state differs, call
`host.noop` otherwise, so a second deploy changes nothing.
"""
from __future__ import annotations

import hashlib
import shlex
from io import BytesIO, StringIO

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation
from pyinfra.facts.files import Sha256File

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


class Account(FactBase):
    """The passwd entry of `user` and the group entry of `group`: a dict each, or None when missing.

    One `getent` each, where pyinfra's Users fact lists every user with lastlog, id and shadow
    lookups: hundreds of processes, the slowest part of a no-change run on several hosts.
    """

    def command(self, user: str, group: str) -> str:
        return (f"getent passwd {shlex.quote(user)} || echo missing; "
                f"getent group {shlex.quote(group)} || echo missing")

    def process(self, output: list[str]) -> dict:
        passwd, group = output[0].split(":"), output[1].split(":")
        return {
            "user": None if passwd == ["missing"] else
            {"uid": int(passwd[2]), "gid": int(passwd[3]), "home": passwd[5], "shell": passwd[6]},
            "group": None if group == ["missing"] else {"gid": int(group[2])},
        }


@operation()
def system_account(user: str, group: str, uid: int, gid: int, home: str, shell: str):
    """
    Keep a system group and a system user in it: these ids, this home (not created), this shell.

    + user, uid: the user and its id
    + group, gid: its primary group and that group's id
    + home: the home directory (systemd's StateDirectory= makes it; it is not created here)
    + shell: the login shell, e.g. /usr/sbin/nologin
    """
    current = host.get_fact(Account, user=user, group=group)
    commands = []
    if current["group"] is None:
        commands.append(f"groupadd --system --gid {gid} {shlex.quote(group)}")
    elif current["group"]["gid"] != gid:
        commands.append(f"groupmod --gid {gid} {shlex.quote(group)}")
    wanted = {"uid": uid, "gid": gid, "home": home, "shell": shell}
    # Short options: useradd and usermod spell the long one for the home differently.
    options = f"-u {uid} -g {gid} -d {shlex.quote(home)} -s {shlex.quote(shell)} {shlex.quote(user)}"
    if current["user"] is None:
        commands.append(f"useradd --system --no-create-home {options}")
    elif current["user"] != wanted:
        commands.append(f"usermod {options}")
    if not commands:
        host.noop(f"user {user} and group {group} are as wanted")
    yield from commands


class ManagedFiles(FactBase):
    """Owner, group, mode and SHA-256 of each of `paths` in one command: {path: dict, or None when missing}.

    The deploy's whole files are compared against this one snapshot, taken while preparing; pyinfra's
    own files.put asks for the file, its checksum and its directory, three round trips a file.
    """

    def command(self, paths: tuple[str, ...]) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        return (
            f"for p in {quoted}; do "
            "if [ -f \"$p\" ]; then printf '%s %s ' \"$(stat -c '%U %G %a' \"$p\")\" \"$(sha256sum < \"$p\" | cut -d' ' -f1)\"; "
            "else printf 'missing '; fi; printf '%s\\n' \"$p\"; done"
        )

    def process(self, output: list[str]) -> dict[str, dict | None]:
        files: dict[str, dict | None] = {}
        for line in output:
            if line.startswith("missing "):
                files[line[len("missing "):]] = None
            else:
                user, group, mode, digest, path = line.split(" ", 4)
                files[path] = {"user": user, "group": group, "mode": mode, "sha256": digest}
        return files


class ProxyAnswers(FactBase):
    """Whether the proxy at `url` answers /health/readiness right now: one short request, on the host.

    A service systemd calls running may still be starting (after a reboot) or be hung; the deploy
    verifies the gateway whenever it did not answer, not only after it (re)started it.
    """

    def command(self, url: str) -> str:
        probe = ("import sys, urllib.request\n"
                 "try:\n    urllib.request.urlopen(sys.argv[1] + '/health/readiness', timeout=3).close()\n"
                 "except Exception:\n    print('no')\nelse:\n    print('yes')")
        return f"python3 -c {shlex.quote(probe)} {shlex.quote(url)} 2>/dev/null || echo no"

    def process(self, output: list[str]) -> bool:
        return output == ["yes"]


@operation()
def whole_file(path: str, content: str | bytes, user: str, group: str, mode: str, present: dict | None,
               validate: str | None = None):
    """
    Keep a whole file: this content, owner, group and mode; replaced in one move, never edited.

    + path: the file on the host
    + content: its whole content (rendered, deterministic)
    + user, group, mode: owner, group and octal mode (e.g. "640")
    + present: what ManagedFiles found at `path` while preparing (None: missing)
    + validate: a command run on the staged copy before it replaces the file; ``{path}`` in it is
      that copy's path (the command quotes it, as validate_command does)

    The new content is staged beside the file (so relative references resolve the same way), with
    its owner and mode set before a byte is written. When `validate` refuses it, the operation
    fails and the file in place, and what reads it, are untouched. With no file in place yet (a
    first deploy) there is nothing to protect: the copy goes in unchecked, and what first reads it
    checks it (for config.yaml: the service's start and the deploy's verification, which fails with
    the journal's lines), sparing a first deploy the check's ~7 s.
    """
    data = content.encode() if isinstance(content, str) else content
    if present == {"user": user, "group": group, "mode": mode, "sha256": hashlib.sha256(data).hexdigest()}:
        host.noop(f"{path} is up to date")
        return
    staged = f"{path}.staged"
    quoted = shlex.quote(staged)
    yield f"install -D -m {mode} -o {shlex.quote(user)} -g {shlex.quote(group)} /dev/null {quoted}"
    yield FileUploadCommand(BytesIO(data), staged)
    if validate and present is not None:
        yield validate.replace("{path}", staged)
    yield f"mv -f {quoted} {shlex.quote(path)}"
