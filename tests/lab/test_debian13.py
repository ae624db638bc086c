"""The deploy on a second target: Debian 13 with Python 3.13, from a fresh host, its pip installing
from a package index (`litellm_pip_index_url`) instead of the wheels the control machine sends."""
from __future__ import annotations

import openai
import pytest

from lab import control, machines
from lab.topology import GATEWAY_PORT, MODELS, TRIXIE_GATEWAY
from tests.lab.conftest import deploy

pytestmark = pytest.mark.lab
INDEX = "https://pypi.org/simple"  # the setting takes any mirror or proxy of PyPI; the lab has PyPI itself


@pytest.fixture(scope="module")
def trixie(lab_up, deploy_dir):
    control.ensure_extra_host(TRIXIE_GATEWAY, fresh=True)
    result = deploy(deploy_dir, hosts=[TRIXIE_GATEWAY], litellm_pip_index_url=INDEX)
    assert result.returncode == 0, result.output[-5000:]
    yield result
    machines.stop(TRIXIE_GATEWAY)  # 400 MB of memory back for the rest of the run


def test_fresh_debian_13_host_becomes_a_working_gateway(trixie, deploy_dir):
    host = machines.ssh(TRIXIE_GATEWAY, "cat /etc/debian_version; /opt/litellm/current/bin/python --version").stdout
    assert host.startswith("13.") and "Python 3.13" in host
    assert "gateway verified" in trixie.output
    assert f"from {INDEX}" in trixie.output  # the release came from the index: no wheels were sent
    assert machines.ssh(TRIXIE_GATEWAY, "ls /var/cache/litellm-gateway 2>&1", check=False).returncode != 0
    client = openai.OpenAI(base_url=f"http://{TRIXIE_GATEWAY.address}:{GATEWAY_PORT}/v1",
                           api_key=control.master_key(), max_retries=0)
    assert sorted(m.id for m in client.models.list().data) == sorted(MODELS)
    answer = client.chat.completions.create(model="phi3-3.8b", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content
    again = deploy(deploy_dir, hosts=[TRIXIE_GATEWAY], litellm_pip_index_url=INDEX)
    assert again.returncode == 0 and again.changes == 0, again.output[-3000:]
