"""pyinfra facts the stock ones don't cover, each one command gathering exactly what the deploy needs.

`fab status` runs the same commands (ManagedFiles, EnvFileState) to tell drift, so a host is
compared the same way by both tools.
"""
from __future__ import annotations

import shlex

from pyinfra.api import FactBase

from gateway import wheels
from gateway.commands import readiness_command
from gateway.services import proxy
from gateway.services.host import HOST_LIB
from on_host.serving import choose

KEY_VAR = "LITELLM_MASTER_KEY"


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


def _passwd(line: str) -> dict | None:
    if line == "missing":
        return None
    name, _, uid, gid, comment, home, shell = line.split(":", 6)
    return {"name": name, "uid": int(uid), "gid": int(gid), "comment": comment, "home": home, "shell": shell}


def _group(line: str) -> dict | None:
    if line == "missing":
        return None
    name, _, gid, members = line.split(":", 3)
    return {"name": name, "gid": int(gid), "members": [m for m in members.split(",") if m]}


class Account(FactBase):
    """The accounts the service account would touch: the user and group by name, and whoever holds
    the wanted uid and gid. A dict of four passwd/group entries, each a dict or None.

    One `getent` each, where pyinfra's Users fact lists every user with lastlog, id and shadow
    lookups: hundreds of processes, the slowest part of a no-change run on several hosts.
    """

    def command(self, user: str, group: str, uid: int, gid: int) -> str:
        return "; ".join(f"getent {db} {shlex.quote(str(key))} || echo missing"
                         for db, key in (("passwd", user), ("group", group), ("passwd", uid), ("group", gid)))

    def process(self, output: list[str]) -> dict:
        user, group, uid_holder, gid_holder = output
        return {"user": _passwd(user), "group": _group(group),
                "uid_holder": _passwd(uid_holder), "gid_holder": _group(gid_holder)}


class ManagedFiles(FactBase):
    """Owner, group, mode and SHA-256 of each of `paths` in one command: {path: dict, or None when missing}.

    The deploy's whole files are compared against this one snapshot, taken while preparing; pyinfra's
    own files.put asks for the file, its checksum and its directory, three round trips a file.
    """

    def command(self, paths: tuple[str, ...]) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        return (
            f"for p in {quoted}; do "
            "if [ -f \"$p\" ]; then printf '%s %s ' \"$(stat -c '%U %G %a' \"$p\")\" "
            "\"$(sha256sum < \"$p\" | cut -d' ' -f1)\"; "
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


ANSWER_PATIENCE = 10  # seconds ProxyAnswers keeps asking before it calls the proxy not answering


class ProxyAnswers(FactBase):
    """Whether the proxy at `url` answers /health/readiness now: the one readiness probe
    (on_host/readiness.py) on the host, asked again for up to `wait` seconds (a busy host's answer
    can miss one probe's 5 s). False too where the probe is not installed yet.

    A service systemd calls running may still be starting (after a reboot) or be hung; the deploy
    verifies the gateway whenever it did not answer, not only after it (re)started it.
    """

    def command(self, url: str, lib: str = HOST_LIB, trust: tuple[str, ...] = (),
                wait: float = ANSWER_PATIENCE) -> str:
        return f"{readiness_command(url, lib, trust, wait)} >/dev/null 2>&1 && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return output == ["yes"]


class Instances(FactBase):
    """The proxy instances and what ran before them, in one command: for each instance port whether
    its unit is active and enabled and which release its slot links to; whether the unit and the
    virtualenv of a gateway deployed before the front are still there."""

    def command(self, ports: tuple[int, ...], slots_dir: str, legacy_unit: str, venv_dir: str,
                inputs: tuple[str, ...] = ()) -> str:
        rows = "; ".join(
            f"e=$(systemctl is-enabled {proxy.instance_unit(port)} 2>/dev/null | head -n1); "
            f"printf '%s %s %s %s %s\\n' {port} \"$(systemctl is-active {proxy.instance_unit(port)})\" \"${{e:-no}}\" "
            f"\"$(readlink -e {shlex.quote(f'{slots_dir}/{port}')} || echo -)\" "
            f"\"$(cat {shlex.quote(f'{slots_dir}/{port}.inputs')} 2>/dev/null || echo -)\""
            for port in ports
        )
        # What the files an instance reads at start are on disk now (the switch-over's own digest).
        digest = (f"PYTHONPATH={HOST_LIB} python3 -c 'import sys; from on_host.switch import inputs_digest; "
                  f"print(inputs_digest(sys.argv[1:]))' {' '.join(map(shlex.quote, inputs))} 2>/dev/null || echo -")
        return (f"{rows}; printf 'legacy %s %s\\n' "
                f"\"$(test -e /etc/systemd/system/{legacy_unit} && echo yes || echo no)\" "
                f"\"$(test -e {shlex.quote(venv_dir)}/pyvenv.cfg && echo yes || echo no)\"; "
                f"printf 'inputs %s\\n' \"$({digest})\"")

    def process(self, output: list[str]) -> dict:
        found: dict = {"instances": {}}
        for line in output:
            first, *rest = line.split()
            if first == "legacy":
                found["legacy_unit"], found["legacy_venv"] = (value == "yes" for value in rest)
            elif first == "inputs":
                found["inputs_on_disk"] = None if rest[0] == "-" else rest[0]
            else:
                state, enabled, release, inputs = rest
                found["instances"][int(first)] = {"active": state == "active", "enabled": enabled == "enabled",
                                                  "release": None if release == "-" else release,
                                                  "inputs": None if inputs == "-" else inputs}
        serving = choose({port: (i["active"], i["enabled"]) for port, i in found["instances"].items()})
        found["serving"] = serving
        found["serving_release"] = found["instances"][serving]["release"] if serving else None
        # The serving instance started with other files than those on disk now (an earlier run's
        # switch-over was refused, or its roll stopped first): a switch is due even if nothing changes.
        found["stale"] = bool(serving and found.get("inputs_on_disk")
                              and found["instances"][serving]["inputs"] != found["inputs_on_disk"])
        return found


class PythonTarget(FactBase):
    """The host's CPython, CPU and glibc: which of the lock's wheels it installs (gateway/wheels.py)."""

    def command(self) -> str:
        return wheels.probe_command()

    def process(self, output: list[str]) -> wheels.Target:
        return wheels.parse_probe("\n".join(output))


class InterfaceAddresses(FactBase):
    """The host's network interfaces and their IP addresses: {interface: [address, ...]}."""

    command = "ip -o addr show"
    requires_command = "ip"

    def process(self, output: list[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for line in output:
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("inet", "inet6"):
                found.setdefault(parts[1].split("@")[0], []).append(parts[3].split("/")[0])
        return found
