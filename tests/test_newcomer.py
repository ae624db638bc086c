"""A newcomer's first steps, as the README gives them: a fresh clone, the control machine's set-up
without root (`./run setup --control`, the real pins from PyPI), then `python -m checks` and
`fab --list` against an inventory of their own. Here the inventory's backend is an Ollama double on
loopback and its nameserver a dnsmasq of the test's own, so the preflight asks only this machine."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from lab.machines import ensure_address
from lab.ollama_double import serve

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
TAGS = {"phi3-3.8b": "phi3:3.8b-mini-128k-instruct-q8_0", "llama3-8b": "llama3:8b"}
NAMESERVER = "127.0.31.53"  # loopback, unused by the lab
GATEWAY = "gw1.newcomer.test"  # its A and PTR records: 127.0.0.1


def readme_commands() -> list[str]:
    """The commands of the README's control-machine section, as written (comments dropped)."""
    section = README.split("## Setting up an operator's machine", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


def as_nobody(directory: Path, command: str) -> subprocess.CompletedProcess:
    """`command` in `directory` as an unprivileged user whose home is the directory above it."""
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           "env", f"HOME={directory.parent}", "PATH=/usr/bin:/bin", "bash", "-c", command],
                          cwd=directory, capture_output=True, text=True, timeout=600)


@pytest.fixture
def nameserver():
    """A real DNS server (dnsmasq) answering for the newcomer's gateway name, and nothing else."""
    ensure_address(NAMESERVER)
    server = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=53",
                               f"--listen-address={NAMESERVER}", "--bind-interfaces", "--no-resolv", "--no-hosts",
                               "--local=/newcomer.test/", "--local=/0.0.127.in-addr.arpa/",
                               f"--host-record={GATEWAY},127.0.0.1", "--pid-file="], stderr=subprocess.PIPE)
    yield NAMESERVER
    server.terminate()
    server.wait(10)


@pytest.fixture
def backend(tmp_path: Path):
    behaviour = tmp_path / "behaviour.json"
    behaviour.write_text(json.dumps({"models": list(TAGS.values())}))
    server = serve("127.0.0.1", 0, str(behaviour))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_fresh_clone_sets_up_a_control_machine_without_root_and_checks_an_inventory(nameserver, backend):
    # Not pytest's tmp_path: it is below a directory only root may enter.
    clone = Path(tempfile.mkdtemp(prefix="newcomer-")) / "gateway"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    # Their own inventory in place of the example's (whose hosts no test may reach).
    (clone / "inventory.py").write_text(
        "from gateway.inventory import gateway_group\n\n"
        f"MODELS = {json.dumps({name: {'tag': tag} for name, tag in TAGS.items()})}\n"
        f"BACKENDS = {{'llm1': {{'address': '127.0.0.1', 'port': {backend}, 'models': list(MODELS)}}}}\n"
        f"gateways = gateway_group([{GATEWAY!r}], {{'litellm_models': MODELS, 'litellm_backends': BACKENDS, "
        f"'litellm_dns_nameservers': [{nameserver!r}]}})\n"
    )
    subprocess.run(["chown", "-R", "nobody:nogroup", str(clone.parent)], check=True)
    set_up = as_nobody(clone, "./run setup --control")
    assert set_up.returncode == 0, set_up.stdout[-2000:] + set_up.stderr[-2000:]

    checks, _deploy, status = readme_commands()
    assert checks == ".venv/bin/python -m checks inventory.py"
    checked = as_nobody(clone, checks)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert re.search(rf"{GATEWAY}\s+dns\s+pass", checked.stdout) and "has all 2 assigned models" in checked.stdout, \
        checked.stdout
    assert status == ".venv/bin/fab status"
    listed = as_nobody(clone, ".venv/bin/fab --list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    for task in ("status", "logs", "restart", "rollback", "keys.create", "keys.limits", "drain", "primary-off"):
        assert re.search(rf"^\s+{re.escape(task)}\b", listed.stdout, re.M), (task, listed.stdout)
    shutil.rmtree(clone.parent)
