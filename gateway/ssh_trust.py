"""Host-key checking for the fab tasks, from the same inventory settings pyinfra's deploy reads.

Fabric's own default accepts any host key (paramiko's AutoAddPolicy): whoever answers on a
gateway's address would get the task's commands and, with `keys.push`, the team keys. Here:

- `ssh_known_hosts_file` (default ~/.ssh/known_hosts) holds the keys trusted;
- `ssh_strict_host_key_checking`: unset, "yes" or "ask" refuse a host whose key is not in that
  file (a task cannot ask); "accept-new" trusts and records a new key, as pyinfra does; "no" or
  "off" accept any key (an explicit opt-out, e.g. for throwaway test hosts);
- a key that differs from the recorded one is refused whatever the setting.

Every refusal names the host, the file and the command that accepts the key.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import paramiko

from gateway.settings import SSH_STRICT_POLICIES

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
_WRITE_LOCK = threading.Lock()


class HostKeyRefused(Exception):
    """The host's key is unknown or changed: the task did not send it anything."""


def _entry(hostname: str, port: int) -> str:
    """The name known_hosts files use for a host: bare on port 22, [host]:port otherwise."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


@dataclass(frozen=True)
class HostKeyTrust:
    known_hosts_file: str = DEFAULT_KNOWN_HOSTS
    strict: str | None = None

    @classmethod
    def from_inventory(cls, data: dict) -> HostKeyTrust:
        strict = data.get("ssh_strict_host_key_checking")
        if strict not in SSH_STRICT_POLICIES:
            raise ValueError(f"ssh_strict_host_key_checking: {strict!r} is not one of yes, accept-new, no "
                             "(the values pyinfra takes); leave it unset to refuse unknown host keys")
        return cls(data.get("ssh_known_hosts_file") or DEFAULT_KNOWN_HOSTS, strict)

    @property
    def path(self) -> str:
        return os.path.expanduser(self.known_hosts_file)

    def client(self, hostname: str, port: int) -> paramiko.SSHClient:
        """A paramiko client that trusts exactly what these settings say for `hostname`."""
        client = paramiko.SSHClient()
        if os.path.exists(self.path):
            client.load_system_host_keys(self.path)  # read only: never rewritten whole
        client.set_missing_host_key_policy(_Policy(self, _entry(hostname, port)))
        return client

    def refused_unknown(self, entry: str, key: paramiko.PKey) -> HostKeyRefused:
        return HostKeyRefused(
            f"host key of {entry} ({key.get_name()} {key.fingerprint}) is not in {self.path}: refused, nothing "
            f"was sent to it. Check the fingerprint on the host "
            f"(ssh-keygen -lf /etc/ssh/ssh_host_{_short(key)}_key.pub), "
            f"then accept it with: ssh-keyscan -t {key.get_name()} {_scan_target(entry)} >> {self.path}  "
            f"(or set ssh_strict_host_key_checking: accept-new in the inventory to trust new hosts on first use)"
        )

    def refused_changed(self, error: paramiko.BadHostKeyException, entry: str) -> HostKeyRefused:
        return HostKeyRefused(
            f"host key of {entry} CHANGED: {self.path} has {error.expected_key.get_name()} "
            f"{error.expected_key.fingerprint}, the host presented {error.key.get_name()} {error.key.fingerprint}. "
            f"Refused, nothing was sent to it: someone may be answering in its place. If the host was rebuilt, "
            f"remove the old key with: ssh-keygen -f {self.path} -R '{entry}', then accept the new one"
        )


class _Policy(paramiko.MissingHostKeyPolicy):
    def __init__(self, trust: HostKeyTrust, entry: str) -> None:
        self.trust, self.entry = trust, entry

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        strict = self.trust.strict
        if strict in ("no", "off"):
            return
        if strict == "accept-new":
            with _WRITE_LOCK, open(self.trust.path, "a", encoding="ascii") as handle:
                handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            return
        raise self.trust.refused_unknown(self.entry, key)


def _short(key: paramiko.PKey) -> str:
    return {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa"}.get(key.get_name(), "ecdsa")


def _scan_target(entry: str) -> str:
    if entry.startswith("["):
        host, port = entry[1:].split("]:")
        return f"-p {port} {host}"
    return entry
