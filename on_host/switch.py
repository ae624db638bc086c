"""The switch-over: traffic moves to a proxy instance only once it answered a completion; then the
instance that served is drained and stopped. Nothing a client sent is refused or cut off.

Run on the gateway host by the deploy (a change the proxy reads, a new release), `fab restart`
(`--release same`) and `fab rollback` (`--release previous`):

    python3 -m on_host.switch --layout JSON --release DIR|same|previous --key-env-file FILE --expect MODEL...

1. The idle instance's slot is pointed at the release and the instance started on its own port.
2. It must answer /health/readiness, list exactly the expected models and answer one completion
   (on_host/smoke.py), directly, before the front sends it anything. If not: it is stopped, its slot
   points where it did, its journal is printed, exit 1. The serving instance never noticed.
3. The front (HAProxy) marks it ready and waits until its health check says UP; then the serving
   instance is set to drain (no new requests; those running, long streams included, finish; at most
   --drain-timeout seconds), stopped, and set to maint. The new one is enabled for the next boot.
4. `current` points at the release; releases no slot uses are pruned to --keep.

With --unless-serving it only checks whether the serving instance already runs the release with the
files on disk as they are now, and answers (a deploy that put drifted files back needs no switch-over).

Prints one line per step (never the key). Exit status: 0 switched (or, with --unless-serving, nothing to
switch), 1 failed (traffic unchanged), 2 bad arguments, 3 with --unless-serving: a switch-over is due.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

from . import front
from .deadline import wait_until
from .readiness import probe
from .serving import choose, unit_state
from .smoke import CheckFailed, check_completion, check_models, read_key

NOT_SERVING = 3  # --unless-serving's exit status: a switch-over is due


class SwitchFailed(Exception):
    pass


def systemctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemctl", *args], capture_output=True, text=True)


CGROUP_STEP_FAILED = "219"  # systemd could not put the process into the unit's cgroup: nothing of the release ran


def start(unit: str) -> subprocess.CompletedProcess:
    """Start a unit; once more when systemd itself failed at its cgroup step (seen in containers:
    "Failed to attach to cgroup ...: No such file or directory" right after the unit's last stop)."""
    started = systemctl("start", unit)
    if started.returncode != 0:
        status = systemctl("show", "-p", "ExecMainStatus", "--value", unit).stdout.strip()
        if status == CGROUP_STEP_FAILED:
            print(f"ok   {unit}: systemd failed at its cgroup step (status 219), starting it once more")
            time.sleep(1)
            systemctl("reset-failed", unit)
            started = systemctl("start", unit)
    return started


def active(unit: str) -> bool:
    return systemctl("is-active", "--quiet", unit).returncode == 0


def enabled(unit: str) -> bool:
    return systemctl("is-enabled", "--quiet", unit).returncode == 0


def target(link: str) -> str | None:
    """The release directory a link points at, or None."""
    return os.path.realpath(link) if os.path.islink(link) else None


def relink(link: str, release: str | None) -> None:
    """Point `link` at `release` in one rename (or remove it for None)."""
    if release is None:
        if os.path.islink(link):
            os.unlink(link)
        return
    os.makedirs(os.path.dirname(link), exist_ok=True)
    temporary = f"{link}.new"
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(release, temporary)
    os.replace(temporary, link)


def journal(unit: str, since: float) -> str:
    return subprocess.run(["journalctl", "-u", unit, "--no-pager", "-o", "short-iso", "-n", "30",
                           "--since", f"@{int(since)}"], capture_output=True, text=True).stdout


def is_release(path: str | None) -> bool:
    return bool(path) and os.access(os.path.join(path, "bin", "litellm"), os.X_OK)


def inputs_digest(paths: list[str]) -> str:
    """What an instance reads at start (config, env file, hook, unit...), as one SHA-256: recorded
    beside its slot as it starts (on_host/started_with.py, its unit's ExecStartPre), so a deploy can
    tell files on disk it does not serve yet."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        try:
            with open(path, "rb") as handle:
                content = handle.read()
        except OSError:
            content = b"\0missing"
        digest.update(path.encode() + b"\0" + hashlib.sha256(content).digest())
    return digest.hexdigest()


def record_inputs(slot: str, digest: str) -> None:
    with open(f"{slot}.inputs.new", "w", encoding="ascii") as handle:
        handle.write(digest + "\n")
    os.replace(f"{slot}.inputs.new", f"{slot}.inputs")


def recorded_inputs(slot: str) -> str | None:
    """The digest of the files the instance of `slot` started with (record_inputs), or None."""
    try:
        with open(f"{slot}.inputs", encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def serving(instances: dict) -> str | None:
    """The instance serving now (on_host/serving.py's rule)."""
    return choose({port: unit_state(instances[port]["unit"]) for port in instances})


class Switch:
    def __init__(self, layout: dict, args: argparse.Namespace) -> None:
        self.layout, self.args = layout, args
        self.instances = layout["instances"]  # port -> {unit, server, slot}
        self.socket, self.backend = layout["admin_socket"], layout["backend"]

    def unit(self, port: str) -> str:
        return self.instances[port]["unit"]

    def server(self, port: str) -> str:
        return self.instances[port]["server"]

    def serving(self) -> str | None:
        return serving(self.instances)

    def release(self, serving: str | None, idle: str) -> str:
        wanted = self.args.release
        if wanted == "same":
            found = target(self.instances[serving]["slot"]) if serving else None
            if not is_release(found):
                raise SwitchFailed("no instance is serving, so there is no release to restart; run the deploy")
            return found
        if wanted == "previous":
            found = target(self.instances[idle]["slot"])
            now = target(self.instances[serving]["slot"]) if serving else None
            if not is_release(found) or found == now:
                raise SwitchFailed(f"no previous release on this host (the idle instance's slot holds "
                                   f"{found or 'nothing'}); nothing to roll back to")
            return found
        if not is_release(wanted):
            raise SwitchFailed(f"{wanted} is not an installed release (no bin/litellm); run the deploy")
        return os.path.realpath(wanted)

    def already_serving(self) -> str | None:
        """The serving instance runs the wanted release with exactly the files on disk now, and answers
        ready: a deploy that only put files back as that instance read them needs no switch-over.
        What was found, or None when a switch-over is due."""
        serving = self.serving()
        if serving is None or self.args.release in ("same", "previous") or not is_release(self.args.release):
            return None
        slot = self.instances[serving]["slot"]
        if target(slot) != os.path.realpath(self.args.release):
            return None
        if recorded_inputs(slot) != inputs_digest(self.args.inputs):
            return None
        ready, _ = probe(self.instances[serving]["url"], timeout=5)
        if not ready:
            return None
        return (f"{self.unit(serving)} already serves release {os.path.basename(target(slot))} with exactly "
                "these files, and answers ready: no switch-over")

    def prove(self, port: str, since: float) -> str:
        """The new instance answers: ready, the expected models, one completion. Its own port, no front."""
        base = self.instances[port]["url"]

        def asked() -> tuple[bool, str, bool]:
            """(ready, its answer, still running)"""
            ready, answer = probe(base, timeout=5)
            return ready, answer, ready or active(self.unit(port))

        _, (ready, answer, running) = wait_until(asked, self.args.ready_timeout, 0.5,
                                                 good=lambda seen: seen[0] or not seen[2])
        if not running:
            raise SwitchFailed(f"{self.unit(port)} stopped while starting (last answer: {answer})")
        if not ready:
            raise SwitchFailed(f"{self.unit(port)} did not answer ready within {self.args.ready_timeout:.0f} s "
                               f"(last: {answer})")
        key = read_key(self.args.key_env_file)
        listed = check_models(base, key, self.args.expect)
        model = (self.args.expect or listed)[0]
        content = check_completion(base, key, model, 60)
        return f"ready in {time.time() - since:.1f} s, models {', '.join(listed)}, completion {content[:40]!r}"

    def front_up(self) -> None:
        """The front owns the gateway port; the unit of old that held it goes first."""
        legacy = self.layout["legacy_unit"]
        if active(legacy):
            systemctl("disable", "--now", legacy)
            print(f"ok   {legacy} (the gateway before the front) stopped and disabled")
        if not active(self.layout["front_unit"]):
            started = systemctl("start", self.layout["front_unit"])
            if started.returncode != 0:
                raise SwitchFailed(f"{self.layout['front_unit']} did not start: {started.stderr.strip()}")
        def answers() -> front.FrontError | None:
            try:
                front.servers(self.socket, self.backend)
            except front.FrontError as error:
                return error
            return None

        up, error = wait_until(answers, 10, 0.1, good=lambda error: error is None)
        if not up:
            raise error

    def wait_up(self, port: str, timeout: float = 30) -> None:
        up, status = wait_until(lambda: front.servers(self.socket, self.backend)[self.server(port)]["status"], timeout,
                                0.1, good=lambda status: status.startswith("UP"))
        if not up:
            raise SwitchFailed(f"the front does not see {self.unit(port)} UP after {timeout:.0f} s ({status})")

    def drain(self, port: str) -> str:
        front.set_state(self.socket, self.backend, self.server(port), "drain")
        start = time.monotonic()
        drained, row, most = front.wait_drained(self.socket, self.backend, self.server(port), self.args.drain_timeout)
        if drained:
            return f"drained in {time.monotonic() - start:.1f} s ({most} request(s) were still running)"
        return (f"drain timeout ({self.args.drain_timeout} s) with {front.in_flight(row)} request(s) still running: "
                "stopped anyway")

    def run(self) -> None:
        serving = self.serving()
        idle = next(p for p in self.instances if p != serving)
        release = self.release(serving, idle)
        idle_unit = self.unit(idle)
        print(f"ok   {self.args.why}: {idle_unit} takes over from "
              f"{self.unit(serving) if serving else 'nothing serving'}, release {os.path.basename(release)}")
        if active(idle_unit):  # left from an interrupted switch; the front does not use it
            systemctl("stop", idle_unit)
        before = target(self.instances[idle]["slot"])
        relink(self.instances[idle]["slot"], release)
        since = time.time()
        systemctl("reset-failed", idle_unit)
        try:
            started = start(idle_unit)
            if started.returncode != 0:
                raise SwitchFailed(f"{idle_unit} did not start: {started.stderr.strip()}")
            print(f"ok   {idle_unit} answers by itself: {self.prove(idle, since)}")
            self.front_up()
            front.set_state(self.socket, self.backend, self.server(idle), "ready")
            self.wait_up(idle)
        except (SwitchFailed, CheckFailed, front.FrontError, OSError) as error:
            systemctl("stop", idle_unit)
            relink(self.instances[idle]["slot"], before)
            try:
                front.set_state(self.socket, self.backend, self.server(idle), "maint")
            except front.FrontError:
                pass
            print(journal(idle_unit, since), end="")
            kept = f"traffic stays on {self.unit(serving)}" if serving else "nothing was serving"
            raise SwitchFailed(f"{error}; {idle_unit} stopped, {kept}") from None
        systemctl("enable", "--quiet", idle_unit)
        print(f"ok   the front sends new requests to {idle_unit}")
        if serving:
            print(f"ok   {self.unit(serving)} {self.drain(serving)}; stopping")
            # Nothing runs on it any more: its exit (a few seconds of uvicorn's shutdown) is not waited for.
            systemctl("stop", "--no-block", self.unit(serving))
            systemctl("disable", "--quiet", self.unit(serving))
        for port in self.instances:
            if port != idle:
                front.set_state(self.socket, self.backend, self.server(port), "maint")
        relink(self.layout["current_link"], release)
        print(f"ok   serving: {idle_unit}, release {os.path.basename(release)}")
        for removed in prune(self.layout, self.args.keep):
            print(f"ok   pruned release {os.path.basename(removed)}")


def prune(layout: dict, keep: int) -> list[str]:
    """Remove releases no slot uses, beyond the newest `keep` (those in use count)."""
    root = layout["releases_dir"]
    used = {target(i["slot"]) for i in layout["instances"].values()} | {target(layout["current_link"])}
    try:
        releases = [os.path.join(root, name) for name in os.listdir(root)]
    except FileNotFoundError:
        return []
    releases = sorted((r for r in releases if os.path.isdir(r) and not os.path.islink(r)),
                      key=os.path.getmtime, reverse=True)
    room = max(keep - len(used & set(releases)), 0)
    removed = []
    for release in releases:
        if release in used:
            continue
        if room > 0:
            room -= 1
            continue
        shutil.rmtree(release, ignore_errors=True)
        removed.append(release)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m on_host.switch", description=__doc__.splitlines()[0])
    parser.add_argument("--layout", required=True, help="the front and instances (gateway/services/registry.py), JSON")
    parser.add_argument("--release", required=True, help="a release directory, or same / previous")
    parser.add_argument("--why", default="switch-over", help="what asked for it, for the first line")
    parser.add_argument("--key-env-file", required=True)
    parser.add_argument("--expect", nargs="*", default=[])
    parser.add_argument("--ready-timeout", type=float, default=180)
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument("--keep", type=int, default=3)
    parser.add_argument("--inputs", nargs="*", default=[],
                        help="with --unless-serving: the files an instance reads at start")
    parser.add_argument("--unless-serving", action="store_true",
                        help=f"only check: exit 0 when the serving instance already runs --release with the "
                             f"--inputs as they are on disk and answers, {NOT_SERVING} when a switch-over is due")
    args = parser.parse_args(argv)
    try:
        switch = Switch(json.loads(args.layout), args)
        if args.unless_serving:
            found = switch.already_serving()
            print(f"ok   {found}" if found else "a switch-over is due")
            return 0 if found else NOT_SERVING
        switch.run()
    except (SwitchFailed, CheckFailed, front.FrontError) as error:
        print(f"FAIL {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
