"""Real systemd hosts on this machine: a cached Debian root file system booted by systemd-nspawn.

Follows shared/reference/lab.md: no private network (each host binds its own loopback address),
`--register=no --keep-unit` because this machine has no systemd as PID 1, and the host's pip
cache bound in so repeated installs are fast. Fleet hosts (with a network namespace of their own,
lab/network.py) boot inside it and reach the package registries through the lab's package proxy.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from lab import network
from lab.topology import (
    CACHE_DIR,
    CONTROL_ADDRESS,
    DEBIAN_SUITE,
    DNS_ADDRESS,
    DOMAIN,
    OLLAMA_PORT,
    PACKAGE_PROXY_PORT,
    PIP_CACHE_DIR,
    STATE_DIR,
    LabHost,
)
from on_host.deadline import wait_until

BASE_PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,ca-certificates,sudo,iproute2"
SSH_KEY = STATE_DIR / "ssh" / "id_ed25519"
# The lab hosts' own keys, recorded from their file systems when they are built: pyinfra, fab and
# the lab's ssh all check host keys against it, as an operator's known_hosts would be checked.
KNOWN_HOSTS = STATE_DIR / "ssh" / "known_hosts"
DOUBLE_SOURCE = Path(__file__).with_name("ollama_double.py")
# Fleet hosts have no route out of their namespace: apt and pip go through the lab's package proxy.
PACKAGE_PROXY = f"http://{CONTROL_ADDRESS}:{PACKAGE_PROXY_PORT}"


class LabError(RuntimeError):
    """Something in the lab could not be brought to the state asked for."""


LOCK_FILE = STATE_DIR / "lab.lock"
_thread_lock = threading.RLock()
_held = {"depth": 0, "fd": -1}


@contextlib.contextmanager
def lab_lock():
    """One process at a time builds or changes what the lab's hosts share (the base image, DNS, the
    fleet's network, a host's file system): for tests run in two processes (`./run test -n 2`),
    a benchmark beside a lab command, two operators.

    Re-entrant within a process (ensure_fleet calls ensure_host, ...); usable as a decorator."""
    with _thread_lock:
        if _held["depth"] == 0:
            STATE_DIR.mkdir(parents=True, exist_ok=True)
            _held["fd"] = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(_held["fd"], fcntl.LOCK_EX)
        _held["depth"] += 1
        try:
            yield
        finally:
            _held["depth"] -= 1
            if _held["depth"] == 0:
                os.close(_held["fd"])  # releases the lock


def run(*cmd: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kwargs)


def apt_mirror(sources_dirs: tuple[str, ...] = ("/etc/apt/sources.list", "/etc/apt/sources.list.d")) -> str:
    """The Debian mirror this machine's own apt uses (never a hard-coded one); it serves every suite."""
    texts = []
    for entry in sources_dirs:
        path = Path(entry)
        files = sorted(path.glob("*.list")) + sorted(path.glob("*.sources")) if path.is_dir() else [path]
        texts += [f.read_text() for f in files if f.is_file()]
    text = "\n".join(texts)
    deb822 = re.findall(r"^URIs:\s*(\S+)\s*\nSuites:\s*(\S+)", text, re.M)
    one_line = re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.M)
    for uri, suite in deb822 + one_line:
        if suite.split("-")[0] == DEBIAN_SUITE and "security" not in uri:
            return uri
    raise LabError("no Debian mirror for bookworm found in this machine's apt sources")


def ensure_base_root(suite: str = DEBIAN_SUITE) -> Path:
    """Build the cached minimal Debian root once (about a minute); every host starts as a copy of it."""
    base = CACHE_DIR / f"{suite}-base"
    if (base / "usr/bin/python3").exists():
        return base
    partial = base.with_name(base.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    print(f"lab: building the {suite} root file system (once, about a minute)", flush=True)
    result = run(
        "debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}",
        suite, str(partial), apt_mirror(), check=False,
    )
    if result.returncode != 0:
        raise LabError(f"debootstrap failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    partial.rename(base)
    return base


def ensure_ssh_key() -> Path:
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "litellm-lab", "-f", str(SSH_KEY))
    return SSH_KEY


def record_host_key(host: LabHost) -> None:
    """Put the host's SSH keys (read from its own file system, so they are the real ones) into KNOWN_HOSTS."""
    ssh_dir = host.root / "etc/ssh"
    if not list(ssh_dir.glob("ssh_host_*_key.pub")):
        run("ssh-keygen", "-A", "-f", str(host.root))  # a base image built without host keys
    keys = sorted(" ".join(p.read_text().split()[:2]) for p in ssh_dir.glob("ssh_host_*_key.pub"))
    KNOWN_HOSTS.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    others = [line for line in (KNOWN_HOSTS.read_text().splitlines() if KNOWN_HOSTS.exists() else [])
              if line.split(" ", 1)[0] != host.address]
    _write(KNOWN_HOSTS, "\n".join(sorted(others + [f"{host.address} {key}" for key in keys])) + "\n")


def _write(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write a file in a host's root; True when its content changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    path.chmod(mode)
    return True


def ollama_unit(host: LabHost) -> str:
    return (
        "[Unit]\nDescription=Ollama API double (lab)\nAfter=network.target\n\n"
        "[Service]\n"
        f"ExecStart=/usr/bin/python3 /usr/local/bin/ollama-double --host {host.address} "
        f"--port {OLLAMA_PORT} --behaviour /etc/ollama-double.json\n"
        "Restart=always\nRestartSec=1\n\n[Install]\nWantedBy=multi-user.target\n"
    )


def topology_stamp(host: LabHost) -> str:
    """Which models the topology gives the backend, as its behaviour file records them."""
    return hashlib.sha256(" ".join(host.tags).encode()).hexdigest()[:12]


def default_behaviour(host: LabHost) -> str:
    import json

    return json.dumps({"models": host.tags, "token_delay": 0.0, "fail": False, "hang": False,
                       "lab_topology": topology_stamp(host)}, indent=2) + "\n"


def behaviour_current(path: Path, host: LabHost) -> bool:
    """The behaviour file was written for the topology's models (a test's changes to it are kept; a
    lab built before the topology gained a model is given it)."""
    import json

    try:
        return json.loads(path.read_text()).get("lab_topology") == topology_stamp(host)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def double_behaviour(backend: LabHost, **changes):
    """The backend's Ollama double with these behaviour keys changed meanwhile (it re-reads its file
    when the file changes), its own behaviour put back after."""
    import json

    path = backend.root / "etc/ollama-double.json"
    original = path.read_text()
    path.write_text(json.dumps({**json.loads(original), **changes}))
    try:
        yield
    finally:
        path.write_text(original)


def _pem_blocks(text: str) -> list[str]:
    return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S)


def trust_host_cas(root: Path, bundle: Path = Path("/etc/ssl/certs/ca-certificates.crt"),
                   pip_proxy: str | None = None) -> None:
    """Give the host the CAs this machine trusts beyond Debian's (e.g. a TLS-inspecting proxy's).

    Lab hosts reach the package registries the way this machine does (directly or through the
    lab's package proxy, whose CONNECT tunnels leave TLS to the host), so they must trust what it
    trusts; pip is pointed at the system bundle, as this machine's own pip is.
    """
    if not bundle.exists():
        return
    extra_file = root / "usr/local/share/ca-certificates/lab-host-trust.crt"
    theirs = set(_pem_blocks((root / "etc/ssl/certs/ca-certificates.crt").read_text()))
    extra = [block for block in _pem_blocks(bundle.read_text()) if block not in theirs]
    if extra and _write(extra_file, "\n".join(extra) + "\n"):
        run("chroot", str(root), "update-ca-certificates")
    proxy = f"proxy = {pip_proxy}\n" if pip_proxy else ""
    _write(root / "etc/pip.conf", f"[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n{proxy}")


def configure_root(host: LabHost) -> bool:
    """Write the per-host files into the root; True when the double's program or unit changed."""
    root = host.root
    pubkey = ensure_ssh_key().with_suffix(".pub").read_text()
    _write(root / "etc/hostname", f"{host.name}\n")
    _write(root / "etc/hosts", f"127.0.0.1 localhost\n{host.address} {host.fqdn} {host.name}\n")
    _write(root / "etc/resolv.conf", f"nameserver {DNS_ADDRESS}\nsearch {DOMAIN}\n")
    _write(
        root / "etc/ssh/sshd_config.d/lab.conf",
        f"ListenAddress {host.address}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nUseDNS no\n",
    )
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    _write(root / "root/.ssh/authorized_keys", pubkey, 0o600)
    if host.namespace:
        _write(root / "etc/apt/apt.conf.d/80lab-proxy", f'Acquire::http::Proxy "{PACKAGE_PROXY}";\n')
    trust_host_cas(root, pip_proxy=PACKAGE_PROXY if host.namespace else None)
    changed = False
    if host.role == "backend":
        changed |= _write(root / "usr/local/bin/ollama-double", DOUBLE_SOURCE.read_text(), 0o755)
        changed |= _write(root / "etc/systemd/system/ollama.service", ollama_unit(host))
        wants = root / "etc/systemd/system/multi-user.target.wants/ollama.service"
        if not wants.is_symlink():
            wants.symlink_to("/etc/systemd/system/ollama.service")
        if not behaviour_current(root / "etc/ollama-double.json", host):
            _write(root / "etc/ollama-double.json", default_behaviour(host))
    return changed


def create_root(host: LabHost) -> None:
    base = ensure_base_root(host.suite)
    host.root.parent.mkdir(parents=True, exist_ok=True)
    partial = host.root.with_name("root.partial")
    shutil.rmtree(partial, ignore_errors=True)
    run("cp", "-a", "--reflink=auto", str(base), str(partial))
    partial.rename(host.root)


def pid(host: LabHost) -> int | None:
    """PID of the host's systemd-nspawn process, if it is alive."""
    try:
        value = int(host.pid_file.read_text())
        os.kill(value, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    cmdline = Path(f"/proc/{value}/cmdline").read_bytes().split(b"\0")
    return value if b"systemd-nspawn" in cmdline[0] and str(host.root).encode() in cmdline else None


def ensure_address(address: str) -> None:
    shown = run("ip", "-o", "addr", "show", "dev", "lo").stdout
    if f" {address}/" not in shown:
        run("ip", "addr", "add", f"{address}/32", "dev", "lo")


def _ppid(value: int) -> int | None:
    try:
        return int(Path(f"/proc/{value}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def _comm(value: int) -> str:
    try:
        return Path(f"/proc/{value}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def namespace_pids(host: LabHost) -> list[int]:
    """Every process in the host's network namespace (none for hosts without one)."""
    if not host.namespace or not Path(f"/run/netns/{host.namespace}").exists():
        return []
    return [int(p) for p in run("ip", "netns", "pids", host.namespace, check=False).stdout.split()]


def container_init(host: LabHost) -> int | None:
    """The container's PID 1 (systemd), as a PID of this machine: nspawn's child, or, for a fleet
    host whose nspawn is gone, the systemd at the top of its namespace."""
    nspawn = pid(host)
    if nspawn is not None:
        candidates = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
        children = [c for c in candidates if _ppid(c) == nspawn and _comm(c) == "systemd"]
        return children[0] if children else None
    inside = namespace_pids(host)
    tops = [p for p in inside if _ppid(p) not in inside and _comm(p) == "systemd"]
    return tops[0] if tops else None


def stop_orphans(host: LabHost, timeout: float = 20) -> None:
    """Empty the host's namespace before a boot: after a SIGKILL of systemd-nspawn its container
    keeps running (two systemds on one root would then fight over ports). SIGRTMIN+4 makes a
    systemd PID 1 power off cleanly; anything else at the top of the namespace gets SIGTERM."""
    inside = namespace_pids(host)
    if not inside:
        return
    print(f"lab: {host.name}: stopping {len(inside)} leftover process(es) in {host.namespace}", flush=True)
    for value in inside:
        if _ppid(value) not in inside:
            with contextlib.suppress(ProcessLookupError):
                os.kill(value, signal.SIGRTMIN + 4 if _comm(value) == "systemd" else signal.SIGTERM)
    wait_until(lambda: not namespace_pids(host), timeout, 0.2)
    for value in namespace_pids(host):
        with contextlib.suppress(ProcessLookupError):
            os.kill(value, signal.SIGKILL)
    if wait_until(lambda: not namespace_pids(host), 5, 0.1)[0]:
        return
    raise LabError(f"{host.name}: processes left in {host.namespace}: {namespace_pids(host)}")


def boot(host: LabHost) -> None:
    if host.namespace:
        network.ensure([host])  # gone after a reboot of this machine
        stop_orphans(host)
        # Both flags: the path alone leaves the container without CAP_NET_ADMIN and with a read-only
        # /proc/sys (keepalived could not add the floating address); with --private-network it keeps
        # the given namespace and gets both.
        network_flags = [f"--network-namespace-path=/run/netns/{host.namespace}", "--private-network"]
    else:
        ensure_address(host.address)
        network_flags = []
    PIP_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    log = open(host.console_log, "ab")
    process = subprocess.Popen(
        [
            "systemd-nspawn", "-D", str(host.root), "-b", "--register=no", "--keep-unit",
            "-M", host.name, "--resolv-conf=off", "--timezone=off", "--link-journal=no",
            "--console=read-only", f"--bind={PIP_CACHE_DIR}:/root/.cache/pip", *network_flags,
        ],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    host.pid_file.write_text(str(process.pid))
    for _ in range(50):  # until the child has exec'd (its cmdline is python's before that)
        if pid(host) is not None or process.poll() is not None:
            break
        time.sleep(0.05)


def ssh_command(host: LabHost, command: str) -> list[str]:
    return [
        "ssh", "-i", str(SSH_KEY), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={KNOWN_HOSTS}", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
        f"root@{host.address}", command,
    ]


def ssh(host: LabHost, command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command on a lab host over real SSH."""
    result = subprocess.run(ssh_command(host, command), text=True, capture_output=True, timeout=timeout)
    if check and result.returncode != 0:
        raise LabError(f"{host.name}: `{command}` exited {result.returncode}: {result.stderr.strip()}")
    return result


def port_open(address: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_ready(host: LabHost, timeout: float = 90) -> None:
    """Wait until sshd answers and systemd has finished booting."""

    def booted() -> bool:
        if pid(host) is None:
            tail = host.console_log.read_text(errors="replace")[-1500:]
            raise LabError(f"{host.name}: systemd-nspawn exited while booting:\n{tail}")
        return port_open(host.address, 22) and ssh(
            host, "systemctl is-system-running --wait", check=False,
            timeout=60).stdout.strip() in ("running", "degraded")

    if wait_until(booted, timeout)[0]:
        return
    raise LabError(f"{host.name}: not ready after {timeout:.0f} s (console log: {host.console_log})")


def stop(host: LabHost, timeout: float = 30) -> None:
    """Shut the host down cleanly: SIGTERM makes systemd-nspawn power the container off."""
    value = pid(host)
    if value is None:
        return
    os.kill(value, signal.SIGTERM)
    if not wait_until(lambda: pid(host) is None, timeout, 0.2)[0]:
        os.killpg(value, signal.SIGKILL)
        time.sleep(0.5)
    host.pid_file.unlink(missing_ok=True)


def crash(host: LabHost, timeout: float = 30) -> None:
    """Kill the host outright, like a power cut: its link down and SIGKILL to the container's PID 1
    (the kernel then kills everything in it, nothing shuts down cleanly), then wait for
    systemd-nspawn to exit.
    `ensure_host` boots it again."""
    init = container_init(host)
    if init is None:
        if pid(host) is None and not namespace_pids(host):
            return
        raise LabError(f"{host.name}: no container PID 1 found to kill")
    if host.namespace:
        # Its network goes with it: a dead machine answers nothing, not even a reset for its
        # connections (its namespace would, with its address still up). `boot` brings the link back.
        run("ip", "-n", host.namespace, "link", "set", "eth0", "down")
    os.kill(init, signal.SIGKILL)
    wait_until(lambda: pid(host) is None and init not in namespace_pids(host), timeout, 0.05)
    if pid(host) is not None:
        raise LabError(f"{host.name}: systemd-nspawn still runs {timeout:.0f} s after its container was killed")
    host.pid_file.unlink(missing_ok=True)


@lab_lock()
def ensure_host(host: LabHost, fresh: bool = False) -> None:
    """Make the host exist and run; with fresh=True, start it again from the clean base image."""
    if fresh:
        stop(host)
        shutil.rmtree(host.root.parent, ignore_errors=True)
    if not host.root.exists():
        create_root(host)
    record_host_key(host)
    changed = configure_root(host)
    if pid(host) is None:
        boot(host)
        wait_ready(host)
    elif changed:
        wait_ready(host)
        ssh(host, "systemctl daemon-reload && systemctl restart ollama")


@lab_lock()
def remove(host: LabHost) -> None:
    stop(host)
    shutil.rmtree(host.root.parent, ignore_errors=True)
