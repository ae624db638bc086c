"""The deploy's own facts read what their commands print (fast, no host)."""
from __future__ import annotations

import grp
import hashlib
import os
import pwd
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from gateway.facts import Account, ManagedFiles, ProxyAnswers

REPO = Path(__file__).resolve().parent.parent


def test_managed_files_reads_owner_mode_and_checksum_and_missing_files(tmp_path):
    present = tmp_path / "config yaml"  # a space in the path, too
    present.write_text("model_list: []\n")
    missing = tmp_path / "gone.json"
    fact = ManagedFiles()
    output = subprocess.run(["sh", "-c", fact.command(paths=(str(present), str(missing)))],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    files = fact.process(output)
    assert files[str(missing)] is None
    entry = files[str(present)]
    assert entry["mode"] == format(present.stat().st_mode & 0o777, "o")
    assert entry["user"] == pwd.getpwuid(os.getuid()).pw_name and entry["group"] == grp.getgrgid(os.getgid()).gr_name
    assert entry["sha256"] == hashlib.sha256(b"model_list: []\n").hexdigest()


def test_account_reads_the_entries_by_name_and_by_id():
    fact = Account()
    assert fact.process(["litellm:x:1002:1002:LiteLLM gateway:/var/lib/litellm:/usr/sbin/nologin", "litellm:x:1002:",
                         "litellm:x:1002:1002:LiteLLM gateway:/var/lib/litellm:/usr/sbin/nologin",
                         "litellm:x:1002:"]) == {
        "user": {"name": "litellm", "uid": 1002, "gid": 1002, "comment": "LiteLLM gateway", "home": "/var/lib/litellm",
                 "shell": "/usr/sbin/nologin"},
        "group": {"name": "litellm", "gid": 1002, "members": []},
        "uid_holder": {"name": "litellm", "uid": 1002, "gid": 1002, "comment": "LiteLLM gateway",
                       "home": "/var/lib/litellm", "shell": "/usr/sbin/nologin"},
        "gid_holder": {"name": "litellm", "gid": 1002, "members": []},
    }
    assert fact.process(["missing"] * 4) == {"user": None, "group": None, "uid_holder": None, "gid_holder": None}
    me = pwd.getpwuid(os.getuid())
    output = subprocess.run(["sh", "-c", fact.command(user=me.pw_name, group="nosuchgroup", uid=me.pw_uid, gid=64999)],
                            capture_output=True, text=True).stdout.splitlines()
    found = fact.process(output)
    assert found["user"]["uid"] == me.pw_uid and found["group"] is None
    assert found["uid_holder"]["name"] == me.pw_name and found["gid_holder"] is None


class _Readiness(BaseHTTPRequestHandler):
    answer = b'{"status": "healthy"}'

    def do_GET(self):  # the stdlib's name
        self.send_response(200 if self.path == "/health/readiness" else 404)
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, *args):
        pass


def _answers(url: str) -> bool:
    fact = ProxyAnswers()
    # The one readiness probe, run from this checkout as the host runs it from where the deploy installs it.
    output = subprocess.run(["sh", "-c", fact.command(url=url, lib=str(REPO), wait=1)], capture_output=True,
                            text=True).stdout.splitlines()
    return fact.process(output)


def test_proxy_answers_is_true_only_while_readiness_answers():
    server = HTTPServer(("127.0.0.1", 0), _Readiness)
    url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert _answers(url) is True
        _Readiness.answer = b'{"status": "unhealthy"}'  # answering is not enough: it must say it is ready
        assert _answers(url) is False
    finally:
        _Readiness.answer = b'{"status": "healthy"}'
        server.shutdown()
        server.server_close()
    assert _answers(url) is False  # nothing listens there any more


def test_an_instance_serving_other_files_than_those_on_disk_is_stale(tmp_path):
    """After a refused switch-over or a stopped roll the new files are on disk but not served: the
    next deploy must switch even though it changes no file (the digest is the switch-over's own)."""
    from gateway.facts import Instances
    from on_host.switch import inputs_digest

    config = tmp_path / "config.yaml"
    config.write_text("timeout: 11\n")
    served = inputs_digest([str(config)])
    config.write_text("timeout: 12\n")
    on_disk = inputs_digest([str(config)])
    assert served != on_disk

    def parse(serving_inputs: str):
        return Instances().process([f"4001 active enabled /opt/litellm/releases/r1 {serving_inputs}",
                                    "4002 inactive disabled /opt/litellm/releases/r1 -",
                                    "legacy no no", f"inputs {on_disk}"])

    assert parse(served)["stale"] is True
    assert parse(on_disk)["stale"] is False
    assert parse("-")["stale"] is True  # deployed before the digest was kept: switched once
