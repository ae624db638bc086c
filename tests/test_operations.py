"""The custom pyinfra operations (gateway/operations.py), tested as pyinfra tests its own: for given
arguments and facts, the exact commands the operation yields, or that it changes nothing, or that it
refuses. Each case is a row: (operation, arguments, facts by fact class name, expected)."""
from __future__ import annotations

import hashlib
from typing import Any

import pytest
from pyinfra.api import FileUploadCommand, OperationError, StringCommand
from pyinfra.context import ctx_host

from gateway import account, operations
from gateway.services.base import ManagedFile

SUDO_TEMP = 'install -m 600 -o "${SUDO_USER:-$(id -un)}" /dev/null '
KEY = "sk-" + "a1" * 32
SETTINGS = "LITELLM_LOG=INFO\n"
LOCK = "litellm==1.108.7 --hash=sha256:00\n"
WANT = account.Wanted("litellm", "litellm", 991, 991, "/nonexistent", "/usr/sbin/nologin")
ROW = ManagedFile("/etc/litellm/config.yaml", "templates/config.yaml.j2", "root", "litellm", "640",
                  "holds the proxy's config", b"model_list: []\n", validate="/bin/check {path}")


def sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


class FakeHost:
    """What an operation asks of its host: facts (given per fact class), its name, and noop()."""

    name = "gw-a.example.org"

    def __init__(self, facts: dict[str, Any]) -> None:
        self.facts, self.noops = facts, []

    def get_fact(self, fact: type, **kwargs: Any) -> Any:
        return self.facts[fact.__name__]

    def noop(self, message: str) -> None:
        self.noops.append(message)

    def get_temp_filename(self) -> str:
        return "/tmp/pyinfra-temp"


def shown(command: Any) -> str:
    """A yielded command as the cases spell it: uploads by destination, temp files by their role."""
    if isinstance(command, FileUploadCommand):
        return f"upload -> {command.dest}"
    text = command.get_raw_value() if isinstance(command, StringCommand) else str(command)
    return (SUDO_TEMP + "TEMP" if text.startswith(SUDO_TEMP)
            else ("rm -f TEMP" if text.startswith("rm -f /tmp/") else text))


def run(operation, facts: dict[str, Any], **arguments: Any) -> tuple[list[str], list[str]]:
    fake = FakeHost(facts)
    with ctx_host.use(fake):
        commands = [shown(c) for c in operation._inner(**arguments)]
    return commands, fake.noops


ENV_UP_TO_DATE = {"settings_sha256": sha(SETTINGS), "key_sha256": sha(KEY), "key_length": len(KEY),
                  "mode": "600", "user": "root", "group": "root"}
CASES = [
    ("env file, as wanted: nothing", operations.secret_env_file,
     {"path": "/etc/litellm/litellm.env", "settings_text": SETTINGS, "master_key": KEY},
     {"EnvFileState": ENV_UP_TO_DATE}, []),
    ("env file, missing, operator key: the key uploaded into a 0600 file made first", operations.secret_env_file,
     {"path": "/etc/litellm/litellm.env", "settings_text": SETTINGS, "master_key": KEY}, {"EnvFileState": None},
     ["install -m 600 -o root -g root /dev/null /etc/litellm/litellm.env.new", SUDO_TEMP + "TEMP",
      "upload -> /etc/litellm/litellm.env.new", "rm -f TEMP",
      "mv -f /etc/litellm/litellm.env.new /etc/litellm/litellm.env"]),
    ("env file, wrong mode: rewritten", operations.secret_env_file,
     {"path": "/etc/litellm/litellm.env", "settings_text": SETTINGS, "master_key": KEY},
     {"EnvFileState": {**ENV_UP_TO_DATE, "mode": "644"}}, "rewritten"),
    ("env file, generated key kept while strong", operations.secret_env_file,
     {"path": "/etc/litellm/litellm.env", "settings_text": SETTINGS, "master_key": None},
     {"EnvFileState": {**ENV_UP_TO_DATE, "key_sha256": sha("sk-" + "f" * 64), "key_length": 67}}, []),
    ("virtualenv holding the lock: nothing", operations.pinned_virtualenv,
     {"path": "/opt/litellm/releases/r1", "requirements": LOCK, "wheel_cache": "/nonexistent",
      "index_url": "https://mirror.example.org/simple"}, {"Sha256File": sha(LOCK)}, []),
    ("virtualenv from an index: hash-checked, no resolving, checked, compiled, marked last",
     operations.pinned_virtualenv,
     {"path": "/opt/r1", "requirements": LOCK, "wheel_cache": "/nonexistent",
      "index_url": "https://mirror.example.org/simple"}, {"Sha256File": None},
     ["test -x /opt/r1/bin/pip || python3 -m venv /opt/r1",
      "install -m 644 -o root -g root /dev/null /opt/r1/requirements.pending",
      SUDO_TEMP + "TEMP", "upload -> /opt/r1/requirements.pending", "rm -f TEMP",
      "/opt/r1/bin/pip install --quiet --no-input --disable-pip-version-check --no-compile --require-hashes --no-deps"
      " --index-url https://mirror.example.org/simple -r /opt/r1/requirements.pending",
      "/opt/r1/bin/python -m pip check --disable-pip-version-check",
      "/opt/r1/bin/python -m compileall -q -j 0 /opt/r1/lib >/dev/null || true",
      "install -m 644 -o root -g root /dev/null /opt/r1/requirements.txt.new",
      SUDO_TEMP + "TEMP", "upload -> /opt/r1/requirements.txt.new", "rm -f TEMP",
      "mv -f /opt/r1/requirements.txt.new /opt/r1/requirements.txt && rm -f /opt/r1/requirements.pending"]),
    ("accounts missing: group, then user, marked as ours", operations.system_account, {"want": WANT},
     {"Account": {"user": None, "group": None, "uid_holder": None, "gid_holder": None}},
     ["groupadd --system --gid 991 litellm",
      f"useradd --system --no-create-home -u 991 -g 991 -d /nonexistent -s /usr/sbin/nologin "
      f"-c '{account.MARKER}' litellm"]),
    ("accounts as wanted: nothing", operations.system_account, {"want": WANT},
     {"Account": {"user": {"uid": 991, "gid": 991, "home": "/nonexistent", "shell": "/usr/sbin/nologin",
                           "comment": account.MARKER},
                  "group": {"gid": 991}, "uid_holder": {"name": "litellm"}, "gid_holder": {"name": "litellm"}}}, []),
    ("someone else's user: refused, naming the fix", operations.system_account, {"want": WANT},
     {"Account": {"user": {"uid": 1000, "gid": 1000, "home": "/home/litellm", "shell": "/bin/bash", "comment": ""},
                  "group": None, "uid_holder": None, "gid_holder": None}}, OperationError),
    ("managed file up to date: nothing", operations.whole_file,
     {"file": ROW, "present": {"user": "root", "group": "litellm", "mode": "640", "sha256": ROW.sha256}}, {}, []),
    ("managed file, first deploy: staged, filled, moved (no check: nothing to protect)", operations.whole_file,
     {"file": ROW, "present": None}, {},
     ["install -D -m 640 -o root -g litellm /dev/null /etc/litellm/config.yaml.staged", SUDO_TEMP + "TEMP",
      "upload -> /etc/litellm/config.yaml.staged", "rm -f TEMP",
      "mv -f /etc/litellm/config.yaml.staged /etc/litellm/config.yaml"]),
    ("managed file changed: the staged copy is checked before it replaces the live one", operations.whole_file,
     {"file": ROW, "present": {"user": "root", "group": "litellm", "mode": "640", "sha256": sha("old")}}, {},
     ["install -D -m 640 -o root -g litellm /dev/null /etc/litellm/config.yaml.staged", SUDO_TEMP + "TEMP",
      "upload -> /etc/litellm/config.yaml.staged", "rm -f TEMP",
      "/bin/check /etc/litellm/config.yaml.staged || { rm -f /etc/litellm/config.yaml.staged; exit 1; }",
      "mv -f /etc/litellm/config.yaml.staged /etc/litellm/config.yaml"]),
]


@pytest.mark.parametrize("operation, arguments, facts, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_operation_yields_these_commands_for_these_facts(operation, arguments, facts, expected):
    if expected is OperationError:
        with pytest.raises(OperationError, match="will not be taken over.*litellm_user"):
            run(operation, facts, **arguments)
        return
    commands, noops = run(operation, facts, **arguments)
    if expected == []:
        assert commands == [] and len(noops) == 1, commands
    elif expected == "rewritten":
        assert commands[0].startswith("install -m 600") and commands[-1].startswith("mv -f"), commands
    else:
        assert commands == expected and noops == []


def test_no_command_of_the_env_file_holds_the_key():
    commands, _ = run(operations.secret_env_file, {"EnvFileState": None}, path="/etc/litellm/litellm.env",
                      settings_text=SETTINGS, master_key=KEY)
    assert not [c for c in commands if KEY in c]
