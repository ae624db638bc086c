"""HTTPS at the front (litellm_tls), in the lab: the official OpenAI client verifies the own CA's
certificate; plain HTTP on the port is refused before its bearer key is read; the gateway's own
checks, the switch-over and `fab status` work over HTTPS; a second deploy changes nothing."""
from __future__ import annotations

import ssl
from pathlib import Path

import openai
import pytest

from gateway.services import front
from lab import control
from lab.topology import GATEWAY_PORT, MODELS
from tests.lab.conftest import TEST_GATEWAY, deploy, service, ssh
from tests.lab.test_fabfile import fab
from tests.test_tls import secret_part

pytestmark = pytest.mark.lab
HTTPS = f"https://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1"
PLAIN = f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1"


def client(url: str, key: str, ca_file: str | None) -> openai.OpenAI:
    # Without a CA file: the system's CAs, which do not know the own CA.
    verify = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60,
                         http_client=openai.DefaultHttpxClient(verify=verify, timeout=60))


@pytest.fixture(scope="module")
def tls_settings(tmp_path_factory) -> dict:
    ca_dir = tmp_path_factory.mktemp("tls") / "ca"
    return {"litellm_tls": "own-ca", "litellm_tls_ca_dir": str(ca_dir), "litellm_tls_names": [TEST_GATEWAY.address]}


@pytest.fixture(scope="module")
def https_gateway(first_deploy, deploy_dir, tls_settings):
    """gw2 switched to HTTPS by a deploy; plain HTTP again afterwards, the certificate and key gone."""
    pid = service("MainPID")
    result = deploy(deploy_dir, **tls_settings)
    yield result, pid
    back = deploy(deploy_dir)
    assert back.returncode == 0, back.output[-4000:]
    assert ssh(f"ls {front.TLS_PEM} {front.TLS_CERT} 2>&1 || true").count("No such file") == 2


def test_a_deploy_turns_https_on_without_restarting_the_proxy_and_verifies_through_it(https_gateway, tls_settings):
    result, pid = https_gateway
    assert result.returncode == 0, result.output[-4000:]
    assert "gateway verified" in result.output and "ok   completion with" in result.output
    assert service("MainPID") == pid  # only the front changed: reloaded, the proxy untouched
    ca_dir = Path(tls_settings["litellm_tls_ca_dir"])
    key = (ca_dir / "hosts" / f"{TEST_GATEWAY.fqdn}.key").read_bytes()
    assert secret_part(key) not in result.output  # the key never reaches the output
    listing = ssh(f"stat -c '%U %a' {front.TLS_PEM} {front.TLS_CERT}; stat -c '%U %a' {front.SERVED_PEM}")
    assert listing.split("\n")[:2] == ["root 600", "root 644"]
    owner, mode = listing.split("\n")[2].split()
    assert mode == "400" and owner not in ("root", "litellm")  # the front's own dynamic user


def test_the_openai_client_verifies_the_certificate_and_gets_models_and_a_completion(https_gateway, tls_settings):
    ca_file = str(Path(tls_settings["litellm_tls_ca_dir"]) / "ca.crt")
    api = client(HTTPS, control.master_key(), ca_file)
    assert sorted(m.id for m in api.models.list()) == sorted(MODELS)
    answer = api.chat.completions.create(model="phi3-3.8b", messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    assert answer.choices[0].message.content


def test_a_client_that_does_not_trust_the_ca_is_refused_by_its_own_verification(https_gateway):
    with pytest.raises(openai.APIConnectionError) as error:
        client(HTTPS, control.master_key(), None).models.list()
    assert "CERTIFICATE_VERIFY_FAILED" in repr(error.value.__cause__) \
        or "certificate verify failed" in repr(error.value.__cause__)


def test_plain_http_is_refused_and_its_key_never_read(https_gateway):
    canary = "sk-canary-plain-http-" + "7" * 40
    with pytest.raises(openai.APIConnectionError):
        client(PLAIN, canary, None).models.list()
    journal = ssh("journalctl -u litellm-front -u 'litellm@*' --since -5min --no-pager; cat /var/log/litellm/proxy.log")
    assert canary not in journal
    assert "SSL handshake failure" in ssh("journalctl -u litellm-front --since -5min --no-pager")


def test_a_config_change_switches_over_and_fab_status_is_healthy_over_https(https_gateway, deploy_dir, tls_settings,
                                                                           tmp_path):
    changed = deploy(deploy_dir, litellm_timeout=31, **tls_settings)
    assert changed.returncode == 0, changed.output[-4000:]
    assert "switch-over:" in changed.output and "gateway verified" in changed.output
    status = fab(tmp_path, "status", litellm_timeout=31, **tls_settings)
    assert status.returncode == 0, status.stdout + status.stderr
    again = deploy(deploy_dir, litellm_timeout=31, **tls_settings)
    assert again.returncode == 0 and again.changes == 0, again.output[-4000:]


def served_names() -> set[str]:
    pem = ssl.get_server_certificate((TEST_GATEWAY.address, GATEWAY_PORT))
    from cryptography import x509

    from gateway.tls import names_of
    return names_of(x509.load_pem_x509_certificate(pem.encode()))


def test_a_new_certificate_alone_is_served_after_the_deploy_reloads_the_front(https_gateway, deploy_dir, tls_settings):
    """A renewal or new names change the certificate only, not the front's config: the front must reload."""
    assert "alias.lab.test" not in served_names()
    pid = service("MainPID")
    # The settings the test before left (litellm_timeout 31): only the names change here.
    renamed = dict(tls_settings, litellm_timeout=31, litellm_tls_names=[TEST_GATEWAY.address, "alias.lab.test"])
    result = deploy(deploy_dir, **renamed)
    assert result.returncode == 0, result.output[-4000:]
    assert "alias.lab.test" in served_names()
    assert service("MainPID") == pid
