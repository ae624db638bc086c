"""What a fab task feeds a remote command's stdin goes in blocks (gateway/remote.BlockStdin), not
one byte per 10 ms as invoke reads a stream: the team keys file reaches every gateway at once."""
from __future__ import annotations

import io

from fabric import Connection

from gateway.remote import STDIN_BLOCK, BlockStdin, Gateway
from gateway.ssh_trust import HostKeyTrust


def test_a_fed_text_is_read_in_blocks():
    runner = BlockStdin(context=Connection("gw.example"))
    keys_file = io.StringIO("x" * (STDIN_BLOCK + 6000))
    reads = []
    while (data := runner.read_our_stdin(keys_file)):
        reads.append(len(data))
    assert reads == [STDIN_BLOCK, 6000]  # invoke's own runner: 71,536 reads of 1 byte, 10 ms apart


def test_every_gateway_connection_runs_commands_with_it(tmp_path):
    gateway = Gateway("gw1", None, "gw1.example", "root", 22, None, False,
                      HostKeyTrust(str(tmp_path / "known_hosts"), "yes"))
    assert gateway.connection().config.runners.remote is BlockStdin
