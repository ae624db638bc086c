"""What every service of a host declares, and the one way its files are installed.

A component (one module of this package) declares its names, its `Service`s (a unit, what it does,
what a change of its files does to it), its rows (`ManagedFile`s made from a `Rows`), what the
deploy removes when it is turned off (`Retired`), what its templates read and its part of the
layout the host-side scripts are told. gateway/services/registry.py puts them together.
"""
from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, unique
from pathlib import Path

from gateway import render
from gateway.settings import Settings
from gateway.tls import Material

REPO = Path(__file__).resolve().parent.parent.parent
UNIT_DIR = "/etc/systemd/system"


@unique
class Change(Enum):
    """What a changed file of a service (or its unit) does to it."""

    RESTART = "restart"  # stopped and started on the new files
    RELOAD = "reload"  # a new process takes the listening socket over: no connection refused
    SWITCH_OVER = "switch-over"  # the idle instance starts on them, takes the traffic once it answers
    RELOAD_CONFIG = "reload-config"  # a changed config is reloaded; a changed unit restarts it


def every_gateway(s: Settings) -> bool:
    return True


def in_a_fleet(s: Settings) -> bool:
    return s.fleet is not None


@dataclass(frozen=True)
class Service:
    unit: str
    does: str  # what it is for, in the deploy's operation names
    change: Change
    runs_where: Callable[[Settings], bool] = every_gateway  # the gateways (by their settings) that run it
    # Its start is this service's step (it may have to take the port from another unit first): the
    # deploy checks it is enabled and running after that step.
    started_by: str | None = None


@dataclass(frozen=True)
class ManagedFile:
    """One file on a host, as the deploy wants it."""

    path: str
    source: str  # repository path: templates/NAME.j2, or a file shipped as it is
    user: str
    group: str
    mode: str  # octal, as stat -c %a prints it
    wanted: str  # the state it brings, for the operation's name
    content: bytes = field(repr=False)  # for a secret: every line but the secret one
    secret: bool = False  # holds the master key: never uploaded whole, never diffed
    validate: str | None = None  # run on the staged copy ({path}) before it replaces the live file
    restarts: tuple[str, ...] = ()  # the services a changed version reaches (their units)

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def is_unit(self) -> bool:
        return self.path.startswith(UNIT_DIR + "/")


@dataclass(frozen=True)
class Retired:
    """Files of a feature turned off since an earlier deploy: looked for, and removed when found."""

    paths: tuple[str, ...]
    wanted: str  # the state their removal brings, for the operation's name
    commands: tuple[str, ...]


@dataclass(frozen=True)
class Rows:
    """What every component's rows are made from, for one host."""

    s: Settings  # resolved() for the host
    host_name: str
    team_keys: str  # team-keys.json as it is to be installed
    issue: bool  # False for read-only tasks: no certificate or token is made
    served: Material | None  # the front's certificate, with litellm_tls
    context: dict[str, object] = field(repr=False)  # what the templates read (registry.context)
    certificate_readers: tuple[str, ...] = ()  # the units besides the front's that serve its certificate

    def readable(self, name: str, source: str, content: str, wanted: str, **extra) -> ManagedFile:
        """Read by the service, changed only by root: root:GROUP 0640."""
        return ManagedFile(f"{self.s.config_dir}/{name}", source, "root", self.s.group, "640", wanted,
                           content.encode(), **extra)

    def system(self, path: str, source: str, content: str, wanted: str, **extra) -> ManagedFile:
        return ManagedFile(path, source, "root", "root", "644", wanted, content.encode(), **extra)

    def template(self, name: str) -> tuple[str, str]:
        return f"templates/{name}", render.render(name, **self.context)

    def unit(self, service: Service) -> ManagedFile:
        """The service's unit: a change of it reaches the service itself."""
        return self.system(unit_path(service), *self.template(f"{service.unit}.j2"),
                           "is installed, hardened", restarts=(service.unit,))


def unit_path(service: Service) -> str:
    return f"{UNIT_DIR}/{service.unit}"


RowsOf = Callable[[Rows], list[ManagedFile]]


def shipped(source: str) -> tuple[str, str]:
    """A file of this repository installed as it is: its source and content."""
    return source, (REPO / source).read_text()


# The one staged install, used by the deploy's whole_file operation and by `fab keys.push`:
# created empty with its owner and mode before a byte is written, filled, checked, moved in place.

def staged(path: str) -> str:
    return f"{path}.staged"


def stage_command(f: ManagedFile) -> str:
    """An empty staged copy beside the file (so relative references resolve the same way), owner and mode first."""
    return (f"install -D -m {f.mode} -o {shlex.quote(f.user)} -g {shlex.quote(f.group)} "
            f"/dev/null {shlex.quote(staged(f.path))}")


def commit_commands(f: ManagedFile, check: bool = True) -> list[str]:
    """After the staged copy is filled: check it (when the row says how and `check`), then one move.

    When the check refuses it, the staged copy is removed and the command fails: the live file,
    and what reads it, are untouched.
    """
    copy = shlex.quote(staged(f.path))
    steps = []
    if f.validate and check:
        # validate quotes its {path} itself; settings keep paths to characters that need no quoting.
        steps.append(f"{f.validate.replace('{path}', staged(f.path))} || {{ rm -f {copy}; exit 1; }}")
    steps.append(f"mv -f {copy} {shlex.quote(f.path)}")
    return steps
