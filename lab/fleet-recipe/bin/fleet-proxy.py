#!/usr/bin/env python3
"""Small forward proxy for lab hosts without a route out: plain-HTTP GET/HEAD (apt) and CONNECT
tunnels (pip over HTTPS), only to an allowlist of package-registry hosts. Stdlib only.
usage: fleet-proxy.py LISTEN_ADDR PORT"""
import http.client, http.server, select, socket, sys, urllib.parse

ALLOW = {"deb.debian.org", "security.debian.org", "pypi.org", "files.pythonhosted.org"}
HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
       "transfer-encoding", "upgrade"}

class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_CONNECT(self):
        host, _, port = self.path.rpartition(":")
        if host not in ALLOW or port != "443":
            return self.send_error(403, "not allowed: " + self.path)
        try:
            up = socket.create_connection((host, 443), timeout=30)
        except OSError as e:
            return self.send_error(502, str(e))
        self.send_response(200, "Connection established"); self.end_headers()
        socks = [self.connection, up]
        while True:
            r, _, _ = select.select(socks, [], [], 120)
            if not r: break
            for s in r:
                data = s.recv(65536)
                if not data: up.close(); self.close_connection = True; return
                (up if s is self.connection else self.connection).sendall(data)

    def do_GET(self, head=False):
        u = urllib.parse.urlsplit(self.path)
        if u.scheme != "http" or u.hostname not in ALLOW or (u.port or 80) != 80:
            return self.send_error(403, "not allowed: " + self.path)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        try:
            c = http.client.HTTPConnection(u.hostname, 80, timeout=60)
            c.request(self.command, (u.path or "/") + ("?" + u.query if u.query else ""), headers=hdrs)
            r = c.getresponse()
        except OSError as e:
            return self.send_error(502, str(e))
        length = r.getheader("Content-Length")
        self.send_response(r.status, r.reason)
        for k, v in r.getheaders():
            if k.lower() not in HOP: self.send_header(k, v)
        if length is None and not head and r.status not in (204, 304):
            self.send_header("Connection", "close"); self.close_connection = True
        self.end_headers()
        if not head:
            while chunk := r.read(65536): self.wfile.write(chunk)
        c.close()

    def do_HEAD(self): self.do_GET(head=True)

    def log_message(self, fmt, *a):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % a))

http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Proxy).serve_forever()
