"""Lab fixtures: the lab up, a gateway host of the tests' own built fresh, and a deploy helper."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.commands import serving_command
from gateway.services.proxy import instance_unit
from gateway.settings import DEFAULTS
from lab import control, machines
from lab.fleet import write_inventory
from lab.topology import GATEWAY_PORT, STATE_DIR, TEST_GATEWAY, LabHost, gateway
from on_host import readiness
from on_host.deadline import wait_until

REPO = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
DEAD_INDEX = "http://127.0.0.1:9/simple"  # nothing listens on the discard port: gw2's pip reaches no index
_counter = itertools.count()
INSTANCE_PORTS = tuple(DEFAULTS["litellm_instance_ports"])  # the lab deploys the defaults


@dataclass
class Deploy:
    returncode: int
    output: str

    @property
    def changes(self) -> int:
        """Operations that changed something, from pyinfra's 'Grand total' row."""
        row = re.search(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", self.output)
        assert row, f"no results table in the deploy output:\n{self.output[-3000:]}"
        return 0 if row.group(2) == "-" else int(row.group(2))


def deploy(tmp_dir: Path, *flags: str, hosts: list[LabHost] | None = None, **overrides) -> Deploy:
    """Run `pyinfra -y [flags] INVENTORY deploy.py` against lab gateways with settings overrides."""
    hosts = hosts or [TEST_GATEWAY]
    inventory = write_inventory(tmp_dir / f"inventory_{next(_counter)}.py", hosts, **overrides)
    result = subprocess.run(
        [PYINFRA, "-y", *flags, str(inventory), "deploy.py"],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )
    return Deploy(result.returncode, result.stdout + result.stderr)


def ssh(command: str, host: LabHost = TEST_GATEWAY, check: bool = True) -> str:
    return machines.ssh(host, command, check=check).stdout


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    """condition()'s first true value within `timeout` seconds; AssertionError naming `what` otherwise."""
    came, value = wait_until(condition, timeout, interval)
    if not came:
        raise AssertionError(f"not within {timeout:.0f} s: {what}")
    return value


def wait_until_ready(host: LabHost = TEST_GATEWAY, timeout: float = 120) -> None:
    """After a restart by hand: wait until the proxy answers ready again (the gateway's own probe)."""
    ready, answer = readiness.wait_ready(f"http://{host.address}:{GATEWAY_PORT}", timeout, interval=0.5)
    assert ready, f"{host.name} not ready after {timeout:.0f} s: {answer}"


def serving(host: LabHost = TEST_GATEWAY) -> str:
    """The proxy instance serving now (litellm@PORT.service), by the host's own rule; and exactly one
    instance enabled for the next boot."""
    found = ssh(serving_command(INSTANCE_PORTS), host).strip()
    enabled = ssh(f"systemctl is-enabled {' '.join(instance_unit(p) for p in INSTANCE_PORTS)} || true", host).split()
    assert found and enabled.count("enabled") == 1, f"serving on {host.name}: {found!r}, enabled: {enabled}"
    return found


def service(prop: str, host: LabHost = TEST_GATEWAY) -> str:
    """A property of the serving instance's unit (MainPID, NRestarts, ExecStart, ...)."""
    return ssh(f"systemctl show -p {prop} --value {serving(host)}", host).strip()


def tree_digest(host: LabHost = TEST_GATEWAY) -> str:
    """Content, modes and owners of every file the deploy manages, the release links and the serving
    instance, as one hash."""
    listing = ssh(
        "find /etc/litellm /etc/systemd/system/litellm@.service /etc/systemd/system/litellm-front.service "
        "/etc/haproxy/litellm-front.cfg /opt/litellm/current/requirements.txt /usr/local/lib/litellm-gateway "
        "-printf '%p %m %u %g\\n' -type f -exec sha256sum {} + 2>/dev/null | sort; "
        "readlink /opt/litellm/current /opt/litellm/slots/*; "
        "systemctl list-units --no-legend --plain --state=active 'litellm@*.service' | cut -d' ' -f1", host
    )
    return hashlib.sha256(listing.encode()).hexdigest()


@pytest.fixture(scope="session")
def deploy_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deploys")


@pytest.fixture(scope="session")
def lab_up() -> None:
    """The configured lab (DNS, backends, gw1) up; nothing rebuilt."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (systemd-nspawn, loopback addresses, port 53)")
    control.up()


@pytest.fixture(scope="session")
def lab_ready(lab_up):
    """The lab up and gw2 built fresh (only the "gw2" group's process may ask for it)."""
    control.ensure_extra_host(TEST_GATEWAY, fresh=True)
    # gw2's pip cannot reach any index, as in a closed network: the deploy must bring the wheels. In
    # root's own pip config, over the lab's /etc/pip.conf, which the lab writes again whenever it
    # brings gw2 up (another test process may, at any time).
    config = TEST_GATEWAY.root / "root/.config/pip/pip.conf"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"[global]\nindex-url = {DEAD_INDEX}\ntimeout = 3\nretries = 0\n")
    return TEST_GATEWAY


@pytest.fixture(scope="session")
def first_deploy(lab_ready, deploy_dir) -> Deploy:
    """The first deploy into a freshly built host: everything from the OS packages up."""
    result = deploy(deploy_dir)
    assert result.returncode == 0, result.output[-6000:]
    return result


@pytest.fixture(scope="session")
def readme_gateway(lab_ready, deploy_dir) -> LabHost:
    """gw1, deployed as `./run lab` deploys it: for tests that span two gateways (a fresh lab has it undeployed)."""
    result = deploy(deploy_dir, hosts=[gateway(1)])
    assert result.returncode == 0, result.output[-6000:]
    return gateway(1)


@pytest.fixture(scope="session")
def gateway_url(first_deploy) -> str:
    return f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1"


@pytest.fixture(scope="session")
def master_key(first_deploy) -> str:
    return control.master_key()


@contextlib.contextmanager
def monitoring_host_held():
    """mon1 serves both test processes (`-n 2`): the fleet's module and tests/lab/test_monitoring.py
    each deploy it to watch their own gateways, one after the other, never at once."""
    with open(STATE_DIR / "mon1.tests.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def monitoring_host():
    """mon1 for one test (monitoring_host_held)."""
    with monitoring_host_held():
        yield


@pytest.fixture
def restore(deploy_dir):
    """Redeploy the lab's own settings after a test that deployed others."""
    yield
    result = deploy(deploy_dir)
    assert result.returncode == 0, result.output[-4000:]
