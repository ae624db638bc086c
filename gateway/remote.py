"""The fleet as the operator tasks see it: gateways to reach over SSH, backends to ask over HTTP.

Built from the same inventory file as the deploy (no second host list). Work runs on every
selected host at once; a host that cannot be reached is reported as such and the others still are.
"""
from __future__ import annotations

import io
import shlex
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import paramiko
from fabric import Config, Connection
from fabric.runners import Remote

from gateway.inventory import is_gateway
from gateway.inventory_reader import host_data
from gateway.preflight.dns import resolver_function
from gateway.settings import Backend, Settings, load
from gateway.ssh_trust import HostKeyRefused, HostKeyTrust

T = TypeVar("T")
CONNECT_TIMEOUT = 10
STDIN_BLOCK = 64 * 1024


class BlockStdin(Remote):
    """Feeds a command the text a task gives it (`in_stream`, e.g. the team keys file) in blocks.
    invoke's runner reads any stream one byte per 10 ms, as if a person typed it: a 6 KB keys file
    took a minute to reach each gateway. A terminal is still read its way."""

    def read_our_stdin(self, input_):
        if isinstance(input_, (io.StringIO, io.BytesIO)):
            data = input_.read(STDIN_BLOCK)
            return data.decode() if isinstance(data, bytes) else data
        return super().read_our_stdin(input_)


@dataclass(frozen=True)
class Gateway:
    name: str
    settings: Settings
    ssh_host: str
    ssh_user: str | None
    ssh_port: int | None
    ssh_key: str | None
    sudo: bool
    trust: HostKeyTrust

    def connection(self) -> Connection:
        """An SSH connection (opened on first use) that checks the host key as the inventory says."""
        kwargs: dict[str, Any] = {"key_filename": self.ssh_key} if self.ssh_key else {}
        connection = _CheckedConnection(self.ssh_host, user=self.ssh_user, port=self.ssh_port,
                                        connect_timeout=CONNECT_TIMEOUT, connect_kwargs=kwargs,
                                        config=Config(overrides={"runners": {"remote": BlockStdin}}))
        connection.client = self.trust.client(connection.host, connection.port)
        connection.trust = self.trust
        return connection

    def run(self, connection: Connection, command: str, **kwargs):
        """Run as root: through sudo when the inventory says so (as pyinfra does), else directly."""
        kwargs.setdefault("hide", True)
        kwargs.setdefault("warn", True)
        kwargs.setdefault("in_stream", False)  # never wait on our stdin (CI has none, scripts pipe it)
        if self.sudo:
            return connection.run(f"sudo -n sh -c {shlex.quote(command)}", **kwargs)
        return connection.run(command, **kwargs)

    @property
    def env_file(self) -> str:
        return self.settings.env_file

    @property
    def config_file(self) -> str:
        return f"{self.settings.config_dir}/config.yaml"


class _CheckedConnection(Connection):
    """A changed host key is refused with the fix, not paramiko's bare BadHostKeyException."""

    trust: HostKeyTrust

    def open(self):
        try:
            return super().open()
        except paramiko.BadHostKeyException as error:
            entry = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
            raise self.trust.refused_changed(error, entry) from None


@dataclass(frozen=True)
class Fleet:
    gateways: tuple[Gateway, ...]

    @property
    def backends(self) -> list[Backend]:
        return list({b.name: b for g in self.gateways for b in g.settings.backends}.values())

    @property
    def models(self):
        return list({m.name: m for g in self.gateways for m in g.settings.models}.values())

    def resolver(self) -> Callable[[str], str]:
        """Name -> address with the inventory's nameservers, as the preflight resolves."""
        first = self.gateways[0].settings
        return resolver_function(first.dns_nameservers, first.preflight_timeout)

    def select(self, only: str = "") -> list[Gateway]:
        """Gateways named in `only` (comma-separated names or SSH addresses); all when empty."""
        if not only:
            return list(self.gateways)
        wanted = {part.strip() for part in only.split(",") if part.strip()}
        chosen = [g for g in self.gateways if g.name in wanted or g.ssh_host in wanted]
        unknown = wanted - {g.name for g in chosen} - {g.ssh_host for g in chosen}
        if unknown:
            known = ", ".join(g.name for g in self.gateways)
            raise ValueError(f"not in the inventory: {', '.join(sorted(unknown))} (gateways: {known})")
        return chosen


def load_fleet(inventory: str) -> Fleet:
    gateways = []
    for name, data in host_data(inventory).items():
        if not is_gateway(data):
            continue  # a monitoring host
        gateways.append(Gateway(
            name=name,
            settings=load(data),
            ssh_host=data.get("ssh_hostname") or name,
            ssh_user=data.get("ssh_user"),
            ssh_port=data.get("ssh_port"),
            ssh_key=data.get("ssh_key"),
            sudo=bool(data.get("_sudo")),
            trust=HostKeyTrust.from_inventory(data),
        ))
    return Fleet(tuple(gateways))


@dataclass(frozen=True)
class Outcome:
    """What one host gave: a value, or the error that kept us from getting one."""
    host: str
    value: Any = None
    error: str | None = None


def on_each(gateways: Sequence[Gateway], work: Callable[[Gateway, Connection], T]) -> list[Outcome]:
    """Run `work` on every gateway at once, each over its own SSH connection."""
    def one(gateway: Gateway) -> Outcome:
        try:
            with gateway.connection() as connection:
                return Outcome(gateway.name, value=work(gateway, connection))
        except HostKeyRefused as refused:
            return Outcome(gateway.name, error=f"REFUSED: {refused}")
        except Exception as error:  # reported per host, the others go on
            return Outcome(gateway.name, error=f"unreachable or failed: {type(error).__name__}: {error}")

    if not gateways:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(gateways))) as pool:
        return list(pool.map(one, gateways))
