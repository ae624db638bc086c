"""The lab's fleet pieces that can be checked without building namespaces or booting hosts: names and
addresses, DNS records, the package proxy's allowlist (against a real proxy on 127.0.0.1), the files
a fleet host gets, the command line."""
from __future__ import annotations

import http.server
import os
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lab import __main__ as cli
from lab import control, dns, machines, network, package_proxy, topology
from lab.topology import FLEET_VIP, by_name, fleet_gateway, fleet_hosts


def test_fleet_hosts_have_namespaces_and_addresses_of_their_own():
    host = by_name("fleet3")
    assert (host.name, host.role, host.address, host.namespace) == ("fleet3", "gateway", "127.1.0.3", "lab-fleet3")
    assert host.fqdn == "fleet3.lab.test"
    assert [h.name for h in fleet_hosts(3)] == ["fleet1", "fleet2", "fleet3"]
    assert fleet_hosts(0) == []
    assert by_name("gw2").namespace is None and by_name("llm1").namespace is None
    for bad in (0, 31):
        with pytest.raises(ValueError):
            fleet_gateway(bad)
    with pytest.raises(KeyError):
        by_name("fleetx")


def test_fleet_addresses_never_collide_with_the_floating_or_control_address():
    addresses = {h.address for h in fleet_hosts(30)}
    assert len(addresses) == 30
    assert not addresses & {FLEET_VIP, topology.CONTROL_ADDRESS}


def test_dns_serves_fleet_hosts_their_reverse_zone_and_the_floating_name():
    lines = dns.render_conf(topology.hosts(1) + fleet_hosts(2)).splitlines()
    assert "host-record=fleet1.lab.test,127.1.0.1" in lines
    assert "host-record=fleet2.lab.test,127.1.0.2" in lines
    assert "local=/1.127.in-addr.arpa/" in lines and "local=/10.0.127.in-addr.arpa/" in lines
    assert f"host-record=gateway.lab.test,{FLEET_VIP}" in lines
    # Bound to its address, dnsmasq answers queries from the fleet namespaces too (they come in on lab-root).
    assert "listen-address=127.0.10.53" in lines and "bind-interfaces" in lines
    assert "host-record=gw1.lab.test,127.0.10.101" in lines


def test_lab_namespaces_are_recognised_by_name():
    assert all(network.LAB_NAMESPACE.match(n) for n in ("lab-br", "lab-fleet1", "lab-fleet30"))
    assert not any(network.LAB_NAMESPACE.match(n) for n in ("lab-root", "lab-fleet", "fl-h1", "other"))


def test_a_host_without_a_namespace_gets_no_fleet_network():
    with pytest.raises(network.NetworkError):
        network.ensure_host_network(by_name("gw1"))
    assert machines.namespace_pids(by_name("gw1")) == []


def test_process_parent_is_read_from_proc():
    assert machines._ppid(os.getpid()) == os.getppid()
    assert machines._ppid(2**22 + 1) is None


@pytest.fixture
def proxy():
    """A real package proxy on 127.0.0.1 (random port), allowing only a local upstream on its own port."""
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    up_port = upstream.server_address[1]
    server = package_proxy.ProxyServer("127.0.0.1", 0, {"127.0.0.1"}, {up_port})
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (upstream, server)]
    for thread in threads:
        thread.start()
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{server.server_address[1]}"}))
    yield server, opener, up_port
    for s in (server, upstream):
        s.shutdown()
        s.server_close()


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello through the proxy"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_the_proxy_refuses_hosts_not_on_its_allowlist_with_403(proxy):
    _, opener, _ = proxy
    # Refused before any connection is tried: nothing leaves this machine.
    for url in ("http://example.com/", "http://localhost/", "http://127.0.0.1:9/"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(url, timeout=5)
        assert refused.value.code == 403, url


def test_the_proxy_relays_plain_http_to_an_allowed_host(proxy):
    _, opener, up_port = proxy
    with opener.open(f"http://127.0.0.1:{up_port}/dists/Release", timeout=5) as response:
        assert response.status == 200 and response.read() == b"hello through the proxy"


def _connect(server, target: str) -> bytes:
    with socket.create_connection(server.server_address, timeout=5) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        return sock.recv(200)


def test_the_proxy_tunnels_only_to_allowed_hosts_on_443(proxy):
    server, _, up_port = proxy
    assert _connect(server, "example.com:443").startswith(b"HTTP/1.1 403")
    assert _connect(server, f"127.0.0.1:{up_port}").startswith(b"HTTP/1.1 403")  # allowed host, wrong port


def test_the_proxy_allows_the_registries_and_this_machines_mirror(monkeypatch):
    monkeypatch.setattr(machines, "apt_mirror", lambda: "http://mirror.test:8080/debian")
    allowed = package_proxy.allowed_hosts()
    assert set(allowed) == {"deb.debian.org", "security.debian.org", "pypi.org", "files.pythonhosted.org",
                            "mirror.test:8080"}
    hosts, ports = package_proxy.parse_allowed(allowed)
    assert "mirror.test" in hosts and "pypi.org" in hosts and ports == {80, 8080}


@pytest.fixture
def lab_root(tmp_path: Path, monkeypatch):
    """configure_root writing into tmp_path instead of the lab's state directory."""
    monkeypatch.setattr(topology, "STATE_DIR", tmp_path)
    key = tmp_path / "id_ed25519"
    key.write_text("private")
    key.with_suffix(".pub").write_text("ssh-ed25519 AAAA lab\n")
    monkeypatch.setattr(machines, "SSH_KEY", key)
    seen = []
    monkeypatch.setattr(machines, "trust_host_cas", lambda root, pip_proxy=None: seen.append(pip_proxy))
    return seen


def test_a_fleet_host_installs_through_the_package_proxy(lab_root):
    host = by_name("fleet2")
    (host.root / "root").mkdir(parents=True)  # a root file system's /root
    machines.configure_root(host)
    assert (host.root / "etc/apt/apt.conf.d/80lab-proxy").read_text() == \
        'Acquire::http::Proxy "http://127.1.0.254:3128";\n'
    assert lab_root == ["http://127.1.0.254:3128"]
    assert "ListenAddress 127.1.0.2\n" in (host.root / "etc/ssh/sshd_config.d/lab.conf").read_text()


def test_a_classic_host_gets_no_proxy(lab_root):
    host = by_name("gw1")
    (host.root / "root").mkdir(parents=True)  # a root file system's /root
    machines.configure_root(host)
    assert not (host.root / "etc/apt/apt.conf.d/80lab-proxy").exists()
    assert lab_root == [None]


def test_pip_conf_keeps_the_cert_line_and_adds_the_proxy(tmp_path: Path):
    bundle = tmp_path / "bundle.crt"
    bundle.write_text("")
    (tmp_path / "etc/ssl/certs").mkdir(parents=True)
    (tmp_path / "etc/ssl/certs/ca-certificates.crt").write_text("")
    machines.trust_host_cas(tmp_path, bundle, pip_proxy="http://127.1.0.254:3128")
    assert (tmp_path / "etc/pip.conf").read_text() == \
        "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\nproxy = http://127.1.0.254:3128\n"
    machines.trust_host_cas(tmp_path, bundle)
    assert (tmp_path / "etc/pip.conf").read_text() == "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"


def test_state_without_a_fleet_means_none_and_monitoring_is_on(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(control, "STATE_FILE", tmp_path / "state.json")
    assert control.read_state() == {"gateways": 1, "fleet": 0, "monitoring": True}
    (tmp_path / "state.json").write_text('{"gateways": 2}\n')
    assert control.read_state() == {"gateways": 2, "fleet": 0, "monitoring": True} and control.lab_fleet() == []
    (tmp_path / "state.json").write_text('{"gateways": 2, "monitoring": false}\n')
    assert not control.lab_monitoring()
    (tmp_path / "state.json").write_text('{"gateways": 2, "fleet": 3}\n')
    assert [h.name for h in control.lab_fleet()] == ["fleet1", "fleet2", "fleet3"]


def test_up_takes_a_fleet_size_and_status_prints_the_fleet(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(control, "up", lambda gateways=None, fleet=None, monitoring=None:
                        calls.append((gateways, fleet, monitoring)))
    fleet_entry = {"name": "fleet1", "fqdn": "fleet1.lab.test", "address": "127.1.0.1", "namespace": "lab-fleet1",
                   "running": True, "ssh": True}
    report = {"dns": {"address": "127.0.10.53", "running": True}, "gateways": [], "backends": [],
              "fleet": [fleet_entry], "package_proxy": {"address": "127.1.0.254:3128", "running": True},
              "monitoring": None}
    monkeypatch.setattr(cli, "report", lambda: report)
    assert cli.main(["up", "--fleet", "3"]) == 0
    assert cli.main(["up", "--no-monitoring"]) == 0
    assert calls == [(None, 3, None), (None, None, False)]
    out = capsys.readouterr().out
    assert "fleet1" in out and "netns=lab-fleet1" in out and "127.1.0.254" in out
    fleet_entry["ssh"] = False
    assert cli.main(["status"]) == 1
