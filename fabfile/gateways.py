"""Tasks on the gateway hosts themselves: logs, validate, restart and rollback (rolling switch-overs), trial."""
from __future__ import annotations

import io
import shlex
import sys
import threading

from fabric import Connection, task
from invoke.exceptions import Exit

from fabfile.common import ONLY_HELP, gateways_of, verdicts
from fabfile.fleet import missed_everywhere
from gateway.commands import smoke_command, switch_command
from gateway.remote import Gateway, on_each
from gateway.roll import NotPutBack, stays_drained, take_turn
from gateway.services.host import HOST_LIB
from gateway.services.proxy import instance_host, validate_command
from gateway.ssh_trust import HostKeyRefused
from gateway.usage import DURATION


class _Prefixed(io.TextIOBase):
    """Writes whole lines to stdout, each behind a host prefix; safe across threads."""

    lock = threading.Lock()

    def __init__(self, prefix: str) -> None:
        self.prefix, self.pending = prefix, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        if lines:
            with self.lock:
                sys.stdout.write("".join(f"{self.prefix}{line}\n" for line in lines))
                sys.stdout.flush()
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.write("\n")


def journal_since(since: str) -> str:
    """--since as journalctl takes it: a duration like fab usage's (15m, 2h, 1d) means that long ago."""
    return f"-{since}" if DURATION.fullmatch(since) else since


@task(help={
    "only": ONLY_HELP,
    "lines": "how many recent lines per host (default 50)",
    "follow": "keep printing new lines until interrupted",
    "since": "only lines since then: a duration like 15m, 2h or 1d, or a time as journalctl takes it "
             "('2025-09-16 10:00', 'yesterday')",
    "grep": "only lines matching this regular expression",
    "file": "read /var/log/litellm/proxy.log instead of the journal",
})
def logs(c, only="", lines=50, follow=False, since="", grep="", file=False):
    """The gateway's log: its journal (or the log file), with -n, --follow, --since and --grep."""
    _, gateways = gateways_of(c, only)
    if file:
        path = f"{gateways[0].settings.log_dir}/proxy.log"
        command = f"tail -n {int(lines)} {'-F ' if follow else ''}{shlex.quote(path)}"
        if grep:
            command += f" | grep --line-buffered -E -- {shlex.quote(grep)}"
        if since:
            raise Exit("--since works on the journal only; drop --file", code=2)
    else:
        command = f"journalctl -u 'litellm@*' -u litellm-front --no-pager -o short-iso -n {int(lines)}"
        command += f" --since {shlex.quote(journal_since(since))}" if since else ""
        command += f" --grep {shlex.quote(grep)}" if grep else ""
        command += " -f" if follow else ""
    several = len(gateways) > 1

    def read(g: Gateway, connection: Connection):
        out = _Prefixed(f"{g.name}: " if several else "")
        result = g.run(connection, command, hide=True, out_stream=out)
        out.flush()
        # journalctl --grep exits 1 when nothing matched: that is an answer, not a failure
        if not result.ok and not (grep and result.exited == 1):
            raise RuntimeError(result.stderr.strip())

    failed = [o for o in on_each(gateways, read) if o.error]
    for outcome in failed:
        print(f"{outcome.host}: {outcome.error}", file=sys.stderr)
    if failed:
        raise Exit(f"no logs from {', '.join(o.host for o in failed)}", code=1)


def _validate(g: Gateway, connection: Connection) -> tuple[bool, str]:
    result = g.run(connection, validate_command(g.settings, g.config_file, g.settings.current_link) + " 2>&1")
    lines = [line for line in result.stdout.splitlines() if "LiteLLM: config" in line or "rror" in line]
    return result.ok, (lines[-1] if lines else result.stdout.strip()[-300:])


@task(help={"only": ONLY_HELP})
def validate(c, only=""):
    """Check each gateway's config with its installed LiteLLM (--validate_config); change nothing."""
    _, gateways = gateways_of(c, only)
    verdicts(on_each(gateways, _validate), "CONFIG", "INVALID", "a config is invalid or a host could not be checked")


def _roll(c, only: str, release: str, done: str, ready_timeout: int, check_config: bool) -> None:
    """One gateway at a time: a switch-over onto `release` (same / previous); stop at the first failure.
    A fleet gateway takes its turn as gateway/roll.py says (drained in every front, changed, put
    back; left drained when it fails). Each step is printed as the host says it, behind the
    gateway's name: a roll of a fleet takes minutes."""
    fleet, gateways = gateways_of(c, only)
    for index, g in enumerate(gateways):
        left = ", ".join(x.name for x in gateways[index + 1:]) or "none"
        print(f"{g.name}: {done} ({index + 1} of {len(gateways)})" + (": draining it in every front of the fleet"
                                                                     if g.settings.fleet else ""), flush=True)
        if g.settings.fleet:
            left += f". {stays_drained(g.name)}"

        def change(g: Gateway = g, left: str = left) -> list[str]:
            return _switch(g, release, done, ready_timeout, check_config, left)

        try:
            lines = take_turn(g.name, (lambda state, g=g: missed_everywhere(fleet, g, state)) if g.settings.fleet
                              else (lambda state: []), change, lambda line: print(line, file=sys.stderr))
        except NotPutBack as missed:
            raise Exit(f"{missed}. Roll stopped; not done: {left}", code=1) from None
        print(f"{g.name}: {done}: " + " | ".join(line[5:] for line in lines if line.startswith("ok")))


def _switch(g: Gateway, release: str, done: str, ready_timeout: int, check_config: bool, left: str) -> list[str]:
    """The switch-over on one gateway (its config checked first for a restart): the host's lines."""
    try:
        with g.connection() as connection:
            if check_config:
                ok, detail = _validate(g, connection)
                if not ok:
                    raise Exit(f"{g.name}: config is invalid ({detail}); nothing changed, "
                               f"the serving instance keeps serving. Roll stopped; not done: {left}", code=1)
            steps = _Prefixed(f"{g.name}: ")
            result = g.run(connection, switch_command(g.settings, release, int(ready_timeout), f"fab {done}"),
                           out_stream=steps)
            steps.flush()
            if not result.ok:
                raise Exit(f"{g.name}: {result.stdout.rstrip()}\nThe serving instance keeps serving. "
                           f"Roll stopped at {g.name}; not done: {left}", code=1)
    except Exit:
        raise
    except HostKeyRefused as refused:
        raise Exit(f"{g.name}: REFUSED: {refused}. Roll stopped; not done: {left}", code=1) from None
    except Exception as error:
        raise Exit(f"{g.name}: unreachable or failed ({type(error).__name__}: {error}). "
                   f"Roll stopped; not done: {left}", code=1) from None
    return result.stdout.strip().splitlines()


@task(help={"only": ONLY_HELP, "ready_timeout": "seconds each new instance may take to answer (default 180)"})
def restart(c, only="", ready_timeout=180):
    # Adjacent literals, one docstring: `fab --list` shows its first line whole.
    ("Restart without losing a request, one gateway at a time: a new instance reads the config, takes over once "
     "it answers, the old one drains.")
    _roll(c, only, "same", "restart", ready_timeout, check_config=True)


@task(help={"only": ONLY_HELP, "ready_timeout": "seconds each new instance may take to answer (default 180)"})
def rollback(c, only="", ready_timeout=180):
    # Adjacent literals, one docstring: `fab --list` shows its first line whole.
    ("Go back to the release that served before, one gateway at a time, without losing a request (the next deploy "
     "brings the inventory's again).")
    _roll(c, only, "previous", "rollback", ready_timeout, check_config=False)


@task(help={
    "only": ONLY_HELP,
    "port": "spare port for the throwaway proxy on the instances' loopback address (default: the gateway port + 10)",
})
def trial(c, only="", port=0):
    """Start a throwaway proxy with the host's config on a spare port, make one completion, stop it."""
    _, gateways = gateways_of(c, only)

    def attempt(g: Gateway, connection: Connection) -> tuple[bool, str]:
        s = g.settings
        spare = int(port) or s.port + 10
        unit = f"litellm-trial-{spare}"
        start = " ".join([
            "systemd-run", f"--unit={unit}", "--collect", "--quiet",
            f"-p User={s.user}", f"-p Group={s.group}", f"-p EnvironmentFile={g.env_file}",
            f"-p WorkingDirectory={s.home}", "-p NoNewPrivileges=yes", "-p ProtectSystem=strict", "-p PrivateTmp=yes",
            f"-p Environment=PYTHONPATH={HOST_LIB}",  # the auth hook's modules, as the instances' units have them
            f"{s.current_link}/bin/litellm", "--config", g.config_file, "--host", s.instance_address,
            "--port", str(spare),
        ])
        busy = g.run(connection, "python3 -c 'import socket; "
                     f"socket.create_connection((\"{s.instance_address}\", {spare}), 1)'")
        if busy.ok:
            return False, f"port {spare} is in use on the host; pass --port"
        started = g.run(connection, start)
        if not started.ok:
            return False, f"could not start the trial proxy: {started.stderr.strip()}"
        try:
            check = g.run(connection, smoke_command(g.settings, f"http://{instance_host(s)}:{spare}", 120))
            return check.ok, " | ".join(check.stdout.strip().splitlines())
        finally:
            g.run(connection, f"systemctl stop {unit}")

    verdicts(on_each(gateways, attempt), "TRIAL", "FAILED", "a trial failed; the services were left alone")
