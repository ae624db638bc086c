"""The fleet address's handover, host side (on_host/handover.py, on_host/fleet_check.py) and its units.

What the kernel and keepalived do with it runs in the lab (tests/lab/test_fleet.py: the holder
stopped cleanly under load, no request failed); here, the parts on their own with real sockets.
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator

from gateway.services import fleet_address, front
from gateway.services.registry import rendered
from gateway.settings import load
from on_host import fleet_check, handover
from tests.lab.conftest import wait_for
from tests.test_fleet import fleet_settings
from tests.test_settings import GOOD_KEY, seed_data


def test_connections_the_front_still_serves_are_counted_and_those_it_closed_are_not():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        accepted = [server.accept()[0] for _ in clients]
        try:
            assert handover.open_connections("127.0.0.1", port) == 3
            # The client closed (it gave up): nobody waits on it (CLOSE_WAIT), though the front still
            # holds its socket.
            clients[0].close()
            assert accepted[0].recv(1) == b""  # its FIN arrived
            assert handover.open_connections("127.0.0.1", port) == 2
            # The front closed its side of another: done with it once the client acknowledged.
            accepted[1].close()
            wait_for(lambda: handover.open_connections("127.0.0.1", port) == 1, 5, "the closed one no longer counted",
                     interval=0.02)
            assert handover.open_connections("127.0.0.2", port) == 0  # another address, another port
            assert handover.open_connections("127.0.0.1", port + 1 if port < 65535 else port - 1) == 0
        finally:
            for sock in clients + accepted:
                sock.close()


def test_the_drop_keeps_only_new_connections_to_the_fleets_address_and_port_waiting():
    rules = handover.ruleset("10.1.2.100", 4000)
    [rule] = [line.strip() for line in rules.splitlines() if line.strip().endswith(" drop")]
    assert rule == ("ip daddr 10.1.2.100 tcp dport 4000 tcp flags & (syn | ack) == syn "
                    f"counter name {handover.COUNTER} drop")
    assert f"table inet {handover.TABLE} " in rules and "hook input" in rules


def test_nft_accepts_the_drop():
    """nft from Debian's nftables (./run setup installs it here; the deploy on a fleet's gateways)."""
    done = subprocess.run(["nft", "-c", "-f", "-"], input=handover.ruleset("10.1.2.100", 4000), text=True,
                          capture_output=True)
    assert done.returncode == 0, done.stderr


def test_keepalived_keeps_the_address_while_a_stopping_front_hands_it_over_and_not_a_moment_longer(tmp_path):
    gone = str(tmp_path / "admin.sock")  # no front answers here
    marker = str(tmp_path / "handover")
    assert fleet_check.main([gone, marker]) == 1
    handover.write_handover(marker, 30)
    assert fleet_check.main([gone, marker]) == 0
    handover.write_handover(marker, -1)  # its time is up (a stop that never finished)
    assert fleet_check.main([gone, marker]) == 1
    (tmp_path / "handover").write_text("garbage\n")
    assert fleet_check.main([gone, marker]) == 1


@contextlib.contextmanager
def admin_socket(path: str, reply: bytes) -> Iterator[list[str]]:
    """A front's admin socket that answers one command with `reply`; yields the commands it heard."""
    heard: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)

        def answer():
            conn, _ = listener.accept()
            with conn:
                heard.append(conn.recv(200).decode())
                conn.sendall(reply)

        thread = threading.Thread(target=answer)
        thread.start()
        yield heard
        thread.join()


def test_a_front_answering_keeps_the_address(tmp_path):
    path = str(tmp_path / "admin.sock")
    with admin_socket(path, b"Name: HAProxy\nVersion: 2.6.12\n"):
        assert fleet_check.main([path, str(tmp_path / "none")]) == 0


def test_a_front_that_is_not_running_is_left_alone(capsys):
    assert handover.main(["stop", "10.1.2.100", "4000", "300", "/nonexistent/handover", "/nonexistent/admin.sock",
                          fleet_address.HANDOVER_VARIABLE, ""]) == 0
    assert "not running: nothing to hand over" in capsys.readouterr().out
    assert handover.main(["stop", "10.1.2.100"]) == 2


def test_the_front_is_told_to_close_every_answer_through_its_admin_socket(tmp_path):
    """HAProxy 2.6 sets a process variable from its CLI in experimental mode only; its answer to a
    command that worked is empty. (The lab's handover test shows the front closing on it.)"""
    path = str(tmp_path / "admin.sock")
    with admin_socket(path, b"\n\n") as heard:
        assert handover.close_every_answer(path, fleet_address.HANDOVER_VARIABLE) is None
    assert heard == [f"experimental-mode on; set var {fleet_address.HANDOVER_VARIABLE} int(1)\n"]
    refused = handover.close_every_answer(str(tmp_path / "gone.sock"), fleet_address.HANDOVER_VARIABLE)
    assert refused and "gone.sock" in refused and "does not answer" in refused


def test_the_front_hands_over_before_keepalived_lets_the_address_go():
    s = fleet_settings(0)
    unit = rendered("litellm-front.service.j2", s, "gw-a.example.org")
    stop = (f"ExecStop=+{fleet_address.Vrrp().handover} stop 10.1.2.100 4000 {s.drain_timeout} "
            f"{fleet_address.HANDOVER_FILE} {front.ADMIN_SOCKET} {fleet_address.HANDOVER_VARIABLE} ${{MAINPID}}")
    assert stop in unit.splitlines()
    assert f"ExecStartPost=+{fleet_address.Vrrp().handover} start" in unit.splitlines()
    keepalived = rendered("litellm-fleet.service.j2", s, "gw-a.example.org")
    assert "Before=litellm-front.service" in keepalived.splitlines()  # stopped after the front
    assert "litellm-front.service" not in [word for line in keepalived.splitlines() if line.startswith("After=")
                                           for word in line.split("=", 1)[1].split()]
    assert f"{fleet_address.HANDOVER_FILE}\"" in rendered("litellm-fleet.conf.j2", s, "gw-a.example.org")
    config = rendered("litellm-front.cfg.j2", s, "gw-a.example.org")
    fleet_frontend = config.split("frontend fleet", 1)[1].split("backend ", 1)[0]
    assert "option idle-close-on-response" in fleet_frontend
    variable = fleet_address.HANDOVER_VARIABLE
    closing = f"http-after-response set-header Connection close if {{ var({variable}) -m found }}"
    assert closing in [line.strip() for line in fleet_frontend.splitlines()]
    single = load(seed_data(litellm_master_key=GOOD_KEY)).resolved(2)
    assert "handover" not in rendered("litellm-front.service.j2", single, "gw")
