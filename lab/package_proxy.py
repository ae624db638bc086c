"""A small forward proxy through which fleet hosts reach the package registries.

Why: fleet hosts live in network namespaces of their own with no route out of this machine, yet the
deploy must install packages there as on a real host. The lab runs this proxy in the root namespace on
the fleet bridge's control address (127.1.0.254:3128) only: plain-HTTP GET/HEAD for apt and CONNECT
tunnels for pip, to an allowlist of registry hosts (403 for anything else), so the fleet reaches no
other address. Stdlib only.

usage: python -m lab.package_proxy ADDRESS PORT ALLOWED_HOST...
"""
from __future__ import annotations

import http.client
import http.server
import select
import signal
import socket
import sys
import urllib.parse

REGISTRIES = ("deb.debian.org", "security.debian.org", "pypi.org", "files.pythonhosted.org")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade"}


class Proxy(http.server.BaseHTTPRequestHandler):
    """GET/HEAD http://host/... and CONNECT host:443, for allowed hosts only."""

    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        if host not in self.server.allow or port != "443":
            return self.send_error(403, f"not allowed: {self.path}")
        try:
            upstream = socket.create_connection((host, 443), timeout=30)
        except OSError as error:
            return self.send_error(502, str(error))
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        with upstream:
            sockets = [self.connection, upstream]
            while True:
                readable, _, _ = select.select(sockets, [], [], 120)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.connection else self.connection).sendall(data)

    def do_GET(self, head: bool = False) -> None:
        url = urllib.parse.urlsplit(self.path)
        port = url.port or 80
        if url.scheme != "http" or url.hostname not in self.server.allow or port not in self.server.http_ports:
            return self.send_error(403, f"not allowed: {self.path}")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        connection = http.client.HTTPConnection(url.hostname, port, timeout=60)
        try:
            connection.request(self.command, target, headers=headers)
            response = connection.getresponse()
        except OSError as error:
            connection.close()
            return self.send_error(502, str(error))
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        if response.getheader("Content-Length") is None and not head and response.status not in (204, 304):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head:
            while chunk := response.read(65536):
                self.wfile.write(chunk)
        connection.close()

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.log_date_time_string()} {self.client_address[0]} {format % args}\n")


class ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: str, port: int, allow: set[str], http_ports: set[int] = frozenset({80})):
        self.allow = set(allow)
        self.http_ports = set(http_ports)
        super().__init__((address, port), Proxy)


def allowed_hosts() -> list[str]:
    """The registries plus the Debian mirror this machine's own apt uses (the hosts' apt is pointed at it)."""
    from lab.machines import LabError, apt_mirror

    try:
        url = urllib.parse.urlsplit(apt_mirror())
    except LabError:
        return sorted(REGISTRIES)
    mirror = url.hostname + (f":{url.port}" if url.port else "") if url.hostname else None
    return sorted({*REGISTRIES, *([mirror] if mirror else [])})


def parse_allowed(entries: list[str]) -> tuple[set[str], set[int]]:
    """HOST or HOST:PORT entries -> (hosts, plain-HTTP ports): port 80, plus a mirror's own port."""
    urls = [urllib.parse.urlsplit(f"http://{entry}") for entry in entries]
    return {u.hostname for u in urls if u.hostname}, {80} | {u.port or 80 for u in urls}


def main(argv: list[str]) -> None:
    address, port, *allow = argv
    hosts, ports = parse_allowed(allow)
    server = ProxyServer(address, int(port), hosts, ports)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stderr.write(f"listening on {address}:{port}, allowing {sorted(hosts)} (http ports {sorted(ports)})\n")
    sys.stderr.flush()
    server.serve_forever()


# ---- the lab's daemon: run by `python -m lab up` in the root namespace, like lab/dns.py's dnsmasq

def _daemon():
    from lab.daemon import Daemon

    return Daemon("lab.package_proxy", "package-proxy", "proxy")


def pid() -> int | None:
    return _daemon().pid()


def stop() -> None:
    _daemon().stop()


def ensure() -> None:
    """Run the proxy on the control address (made first if missing); leave a listening one alone."""
    from lab import network
    from lab.topology import CONTROL_ADDRESS, PACKAGE_PROXY_PORT

    network.ensure([])
    _daemon().ensure(CONTROL_ADDRESS, PACKAGE_PROXY_PORT, CONTROL_ADDRESS, str(PACKAGE_PROXY_PORT), *allowed_hosts())


if __name__ == "__main__":
    main(sys.argv[1:])
