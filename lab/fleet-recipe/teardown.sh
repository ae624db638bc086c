#!/bin/bash
# teardown.sh: stop everything this lab started (by pid file / by namespace), delete namespaces + root-ns veth
cd /tmp/fleet-lab
# 1. containers: SIGTERM to systemd-nspawn = clean shutdown (~1.5 s)
for f in run/nspawn-h*.pid; do [ -f $f ] || continue; p=$(cat $f)
  kill -TERM $p 2>/dev/null && while kill -0 $p 2>/dev/null; do sleep 0.1; done; rm -f $f; done
# 2. other processes started from here (keepalived, http.server, proxy)
for f in run/*.pid; do [ -f $f ] && kill $(cat $f) 2>/dev/null; rm -f $f; done
sleep 1
# 3. anything still inside a lab namespace (e.g. an orphaned container after SIGKILL of nspawn)
for n in fl-h1 fl-h2 fl-h3 fl-client fl-br; do
  for p in $(ip netns pids $n 2>/dev/null); do echo "leftover in $n: $p $(cat /proc/$p/comm)"
    if [ "$(cat /proc/$p/comm)" = systemd ]; then kill -s SIGRTMIN+4 $p; else kill $p; fi; done
done
sleep 2
ip link del fl-root 2>/dev/null
for n in fl-client fl-h1 fl-h2 fl-h3 fl-br; do ip netns del $n 2>/dev/null; done
echo "namespaces left: $(ip netns list | grep -c '^fl-')"; ip -br link | grep fl- || echo "no fl-* links in root ns"
