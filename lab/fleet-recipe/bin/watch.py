#!/usr/bin/env python3
"""watch.py SECONDS: every 0.1 s print which host namespaces carry 127.1.0.100 and what a client in
fl-client gets from http://127.1.0.100:8000/ (one short TCP request per tick, 0.3 s timeout). Bounded."""
import subprocess, sys, time
end = time.time() + float(sys.argv[1]); t0 = time.time(); last = None
while time.time() < end:
    holders = [h for h in ("h1", "h2", "h3") if "127.1.0.100/" in subprocess.run(
        ["ip", "-n", "fl-" + h, "-o", "addr", "show", "dev", "eth0"], capture_output=True, text=True).stdout]
    r = subprocess.run(["ip", "netns", "exec", "fl-client", "curl", "-s", "-m", "0.3", "http://127.1.0.100:8000/"],
                       capture_output=True, text=True)
    ans = r.stdout.strip() or "rc=%d" % r.returncode
    state = (tuple(holders), ans)
    if state != last:
        print("%7.2f holders=%s client=%s" % (time.time() - t0, ",".join(holders) or "-", ans), flush=True)
        last = state
    time.sleep(0.1)
