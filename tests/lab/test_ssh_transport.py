"""The deploy's SSH connections send each packet at once (no Nagle's algorithm: no 40 ms per command)."""
from __future__ import annotations

import runpy
import socket

import pytest
from pyinfra.api import Config
from pyinfra.connectors.sshuserclient.client import SSHClient
from pyinfra.context import ctx_config

from lab.machines import KNOWN_HOSTS, SSH_KEY
from tests.lab.conftest import REPO

pytestmark = pytest.mark.lab


def test_config_py_turns_nagle_off_on_pyinfra_ssh_connections(lab_ready):
    with ctx_config.use(Config()):
        runpy.run_path(str(REPO / "config.py"))  # what pyinfra does with it before connecting
    client = SSHClient()
    client.connect(
        lab_ready.address, username="root", key_filename=str(SSH_KEY), allow_agent=False, look_for_keys=False,
        _pyinfra_ssh_known_hosts_file=str(KNOWN_HOSTS), _pyinfra_ssh_strict_host_key_checking="yes",
    )
    try:
        sock = client.get_transport().sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        _, stdout, _ = client.exec_command("echo ok")
        assert stdout.read().strip() == b"ok"
    finally:
        client.close()
