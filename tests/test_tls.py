"""TLS at the front, control side: the own CA, the operator's files, the settings and what the host gets."""
from __future__ import annotations

import datetime
import socket
import ssl
import stat
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import tls
from gateway.commands import smoke_command, status_command
from gateway.services import front
from gateway.services.registry import managed_files, rendered
from gateway.settings import SettingsError, load
from tests.test_settings import GOOD_KEY, seed_data

HOST = "hx-api-server.dev-test.hana-x.ai"


def secret_part(key_pem: bytes) -> str:
    """Base64 of a P-256 PKCS#8 key's private scalar: its first 48 characters are the same for every key."""
    return b"".join(key_pem.splitlines()[1:-1]).decode()[48:88]


def settings(tmp_path: Path, **extra):
    data = seed_data(litellm_master_key=GOOD_KEY, litellm_tls="own-ca", litellm_tls_ca_dir=str(tmp_path / "ca"))
    data.update(extra)
    return load(data).resolved(2)


def handshake(pem: bytes, ca_file: str, server_name: str, tmp_path: Path) -> str:
    """A real TLS handshake: a server serving `pem`, a client verifying with `ca_file` for `server_name`."""
    served = tmp_path / "served.pem"
    served.write_bytes(pem)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(served)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        connection, _ = listener.accept()
        try:
            with server_context.wrap_socket(connection, server_side=True) as tls_socket:
                tls_socket.sendall(b"hello")
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_context = ssl.create_default_context(cafile=ca_file)
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client_context.wrap_socket(raw, server_hostname=server_name) as client:
            return client.recv(5).decode()
    finally:
        thread.join(5)
        listener.close()


def test_the_own_ca_is_made_once_private_and_its_certificates_verify_for_the_gateway(tmp_path):
    s = settings(tmp_path, litellm_tls_names=["llm-api.dev-test.hana-x.ai", "10.1.2.3"])
    first = tls.material(s, HOST)
    ca_dir = tmp_path / "ca"
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((ca_dir / "hosts" / f"{HOST}.key").stat().st_mode) == 0o600
    assert first.ca_file == str(ca_dir / "ca.crt")
    assert first.names == (HOST, "llm-api.dev-test.hana-x.ai", "10.1.2.3")
    assert handshake(first.pem, first.ca_file, HOST, tmp_path) == "hello"
    assert handshake(first.pem, first.ca_file, "llm-api.dev-test.hana-x.ai", tmp_path) == "hello"
    with pytest.raises(ssl.SSLCertVerificationError, match="match|mismatch"):
        handshake(first.pem, first.ca_file, "other.dev-test.hana-x.ai", tmp_path)
    # A second deploy sends the same bytes: no change on the host.
    assert tls.material(s, HOST) == first
    ca_bytes = (ca_dir / "ca.crt").read_bytes()
    assert tls.material(settings(tmp_path), "gw2.example.org").ca_file == first.ca_file
    assert (ca_dir / "ca.crt").read_bytes() == ca_bytes  # one CA for every gateway


def test_a_certificate_is_issued_again_for_new_names_and_before_it_ends(tmp_path, monkeypatch):
    first = tls.material(settings(tmp_path), HOST)
    renamed = tls.material(settings(tmp_path, litellm_tls_names=["alias.example.org"]), HOST)
    assert renamed.chain != first.chain and "alias.example.org" in renamed.names
    monkeypatch.setattr(tls, "RENEW_BEFORE", datetime.timedelta(days=tls.CERT_DAYS + 1))
    renewed = tls.material(settings(tmp_path, litellm_tls_names=["alias.example.org"]), HOST)
    assert renewed.chain != renamed.chain and renewed.names == renamed.names


def test_a_damaged_ca_is_an_error_naming_the_fix_never_replaced(tmp_path):
    tls.material(settings(tmp_path), HOST)
    key = tmp_path / "ca" / "ca.key"
    key.write_bytes(b"not a key")
    with pytest.raises(tls.TLSError, match="restore ca.crt and ca.key from your backup"):
        tls.material(settings(tmp_path), HOST)
    assert key.read_bytes() == b"not a key"


def _operator_pair(tmp_path: Path, name: str, days: int = 30, start: int = -1) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=start)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_file, key_file = tmp_path / f"{name}-{days}.crt", tmp_path / f"{name}-{days}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key_pem)
    return cert_file, key_file, key_pem


def test_the_operators_certificate_is_served_as_given(tmp_path):
    cert_file, key_file, _ = _operator_pair(tmp_path, HOST)
    s = settings(tmp_path, litellm_tls={"cert_file": str(cert_file), "key_file": str(key_file)})
    served = tls.material(s, HOST)
    assert served.chain == cert_file.read_bytes() and served.ca_file == str(cert_file)
    assert handshake(served.pem, served.ca_file, HOST, tmp_path) == "hello"


def test_wrong_operator_files_stop_the_deploy_naming_the_file_and_never_showing_the_key(tmp_path):
    cert_file, key_file, key_pem = _operator_pair(tmp_path, HOST)
    other_cert, other_key, other_pem = _operator_pair(tmp_path, "other.example.org")
    expired, expired_key, _ = _operator_pair(tmp_path, HOST, days=-1, start=-10)
    cases = {
        "is not the key of the certificate": {"cert_file": str(cert_file), "key_file": str(other_key)},
        "is valid for none of hx-api-server": {"cert_file": str(other_cert), "key_file": str(other_key)},
        "not now; renew it": {"cert_file": str(expired), "key_file": str(expired_key)},
        "holds no PEM certificate": {"cert_file": str(key_file), "key_file": str(key_file)},
        "holds no unencrypted PEM private key": {"cert_file": str(cert_file), "key_file": str(cert_file)},
        "cannot read": {"cert_file": str(tmp_path / "missing.crt"), "key_file": str(key_file)},
    }
    body, other_body = secret_part(key_pem), secret_part(other_pem)
    for expected, files in cases.items():
        with pytest.raises(tls.TLSError, match=expected) as error:
            tls.material(settings(tmp_path, litellm_tls=files), HOST)
        assert "litellm_tls" in str(error.value)
        assert body not in str(error.value) and other_body not in str(error.value)


@pytest.mark.parametrize("value, expected", [
    ("yes", "is none of"),
    ({"cert_file": "/etc/x.crt"}, "give both cert_file and key_file"),
    ({"cert_file": "/etc/x.crt", "key_file": "/etc/x.key", "chain": "x"}, "unknown keys"),
    ({"cert_file": "tests/x.crt", "key_file": "/etc/x.key"}, "inside the repository"),
])
def test_bad_tls_settings_are_refused_naming_the_setting(value, expected):
    with pytest.raises(SettingsError, match=expected):
        load(seed_data(litellm_master_key=GOOD_KEY, litellm_tls=value))


def test_names_without_tls_are_refused():
    with pytest.raises(SettingsError, match="litellm_tls_names: names a certificate"):
        load(seed_data(litellm_master_key=GOOD_KEY, litellm_tls_names=["api.example.org"]))


def test_the_host_gets_the_pem_root_only_the_chain_public_and_the_front_serves_https_only(tmp_path):
    s = settings(tmp_path)
    table = {f.path: f for f in managed_files(s, HOST, "{}")}
    pem, chain = table[front.TLS_PEM], table[front.TLS_CERT]
    assert (pem.user, pem.group, pem.mode, pem.restarts) == ("root", "root", "600", (front.UNIT,))
    assert b"PRIVATE KEY" in pem.content and b"PRIVATE KEY" not in chain.content and chain.mode == "644"
    paths = list(table)
    assert paths.index(front.TLS_PEM) < paths.index(front.CONFIG)  # in place before the config is checked
    assert table[front.CONFIG].validate.startswith(f"{front.PEM_VARIABLE}={front.TLS_PEM} ")
    cfg = rendered("litellm-front.cfg.j2", s, HOST)
    assert '    bind 0.0.0.0:4000 ssl crt "${LITELLM_FRONT_PEM}" alpn http/1.1\n' in cfg
    assert "ssl-min-ver TLSv1.2" in cfg
    unit = rendered("litellm-front.service.j2", s, HOST)
    assert f"    presetenv LITELLM_FRONT_PEM {front.SERVED_PEM}\n" in cfg
    copy = f"+/bin/sh -c 'install -m 0400 {front.TLS_PEM} {front.SERVED_PEM}.new"
    assert unit.count(copy) == 2 and unit.index("ExecReload=+") < unit.index("ExecReload=/usr/sbin/haproxy")
    assert s.local_url == "https://127.0.0.1:4000"
    assert f"--tls-pin {front.TLS_CERT}" in smoke_command(s, s.local_url, 10)
    assert f"--tls-pin {front.TLS_CERT}" in status_command(s)


def test_without_tls_nothing_changes(tmp_path):
    s = replace(settings(tmp_path), tls=None)
    table = {f.path for f in managed_files(s, HOST, "{}")}
    assert front.TLS_PEM not in table and front.TLS_CERT not in table
    assert "    bind 0.0.0.0:4000\n" in rendered("litellm-front.cfg.j2", s, HOST)
    assert "LITELLM_FRONT_PEM" not in rendered("litellm-front.service.j2", s, HOST)
    assert s.local_url == "http://127.0.0.1:4000" and "--tls-pin" not in smoke_command(s, s.local_url, 10)
    assert not (tmp_path / "ca").exists()  # no CA made for a gateway without TLS


def _https_ready_server(pem: bytes, tmp_path: Path):
    """An HTTPS server on 127.0.0.1 answering /health/readiness healthy, serving `pem`."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Ready(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "healthy"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    served = tmp_path / "https-server.pem"
    served.write_bytes(pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(served)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_hosts_own_checks_trust_exactly_the_pinned_chain_by_address(tmp_path):
    from on_host import readiness
    ours = tls.material(settings(tmp_path), HOST)
    stranger = tls.material(settings(tmp_path / "elsewhere"), HOST)  # another CA, same names
    pin = tmp_path / "front.crt"
    pin.write_bytes(ours.chain)
    servers = {}
    for name, served in (("ours", ours), ("stranger", stranger)):
        (tmp_path / name).mkdir()
        servers[name] = _https_ready_server(served.pem, tmp_path / name)
    try:
        url = {name: f"https://127.0.0.1:{server.server_address[1]}" for name, server in servers.items()}
        assert readiness.probe(url["ours"])[0] is False  # the system's CAs do not know the own CA
        readiness.trust_pinned(str(pin))
        assert readiness.probe(url["ours"]) == (True, "healthy")  # by address: the cert names only HOST
        ready, answer = readiness.probe(url["stranger"])
        assert not ready and "CERTIFICATE_VERIFY_FAILED" in answer
    finally:
        readiness.urllib.request.install_opener(None)
        for server in servers.values():
            server.shutdown()


def test_the_preflight_names_wrong_operator_files_before_any_host_changes(tmp_path):
    from gateway import preflight
    cert_file, _, _ = _operator_pair(tmp_path, HOST)
    _, other_key, _ = _operator_pair(tmp_path, "other.example.org")
    data = seed_data(litellm_master_key=GOOD_KEY, litellm_tls={"cert_file": str(cert_file), "key_file": str(other_key)})
    report = preflight.run_for_data({HOST: data}, skip={"dns", "backends"})
    assert not report.ok and report.exit_code & preflight.EXIT_SETTINGS
    assert any("is not the key of the certificate" in p for p in report.settings_problems[HOST])
    own = seed_data(litellm_master_key=GOOD_KEY, litellm_tls="own-ca", litellm_tls_ca_dir=str(tmp_path / "ca"))
    assert preflight.run_for_data({HOST: own}, skip={"dns", "backends"}).ok
    assert not (tmp_path / "ca").exists()  # checking makes nothing


def test_four_makers_at_once_share_one_ca_and_every_certificate_verifies_with_it(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda n: tls.material(settings(tmp_path), f"gw{n}.example.org"), range(4)))
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.crt").read_bytes())
    for m in made:
        x509.load_pem_x509_certificate(m.chain).verify_directly_issued_by(ca)
    assert not [p.name for p in (tmp_path / "ca").rglob(".*") if p.name != ".lock"]  # no temp file left


def test_names_are_kept_canonical_so_a_second_deploy_issues_nothing(tmp_path):
    odd = settings(tmp_path, litellm_tls_names=["FD00:0:0::1", "API.Example.org"], litellm_bind_address="fd00:0::2")
    first = tls.material(odd, HOST)
    assert first.names == (HOST, "fd00::2", "fd00::1", "api.example.org")
    assert tls.material(odd, HOST) == first


def test_a_kept_key_that_is_not_its_certificates_is_issued_anew(tmp_path):
    first = tls.material(settings(tmp_path), HOST)
    stray = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "ca" / "hosts" / f"{HOST}.key").write_bytes(stray)  # an interrupted run: new key, old certificate
    again = tls.material(settings(tmp_path), HOST)
    assert again.chain != first.chain and handshake(again.pem, again.ca_file, HOST, tmp_path) == "hello"


def test_a_ca_directory_open_to_others_is_refused(tmp_path):
    (tmp_path / "ca").mkdir(mode=0o755)
    (tmp_path / "ca").chmod(0o755)
    with pytest.raises(tls.TLSError, match="chmod 700"):
        tls.material(settings(tmp_path), HOST)


def test_an_operator_wildcard_or_upper_case_certificate_is_accepted(tmp_path):
    cert_file, key_file, _ = _operator_pair(tmp_path, "*.DEV-TEST.hana-x.ai")
    s = settings(tmp_path, litellm_tls={"cert_file": str(cert_file), "key_file": str(key_file)})
    assert tls.material(s, HOST).names == ("*.dev-test.hana-x.ai",)
    assert not tls.covers({"*.dev-test.hana-x.ai"}, "a.b.dev-test.hana-x.ai")  # one label only


def test_read_only_tasks_make_nothing(tmp_path):
    s = settings(tmp_path)
    assert front.TLS_PEM not in {f.path for f in managed_files(s, HOST, "{}", issue=False)}
    assert not (tmp_path / "ca").exists()
    made = tls.material(s, HOST)
    rows = {f.path: f for f in managed_files(s, HOST, "{}", issue=False)}
    assert rows[front.TLS_PEM].content == made.pem  # what the deploy made, read back


def test_the_pin_trusts_the_leaf_not_other_certificates_of_the_same_ca(tmp_path):
    from on_host import readiness
    ours = tls.material(settings(tmp_path), HOST)
    sibling = tls.material(settings(tmp_path), "gw9.example.org")  # same CA, another gateway
    pin = tmp_path / "front.crt"
    pin.write_bytes(ours.chain)
    (tmp_path / "s").mkdir()
    server = _https_ready_server(sibling.pem, tmp_path / "s")
    try:
        readiness.trust_pinned(str(pin))
        ready, answer = readiness.probe(f"https://127.0.0.1:{server.server_address[1]}")
        assert not ready and "CERTIFICATE_VERIFY_FAILED" in answer
    finally:
        readiness.urllib.request.install_opener(None)
        server.shutdown()
