#!/bin/bash
# ka-up.sh N...: start keepalived (VRRP only, foreground, log to console) in fl-hN
cd /tmp/fleet-lab
for n in "$@"; do
  ip netns exec fl-h$n setsid keepalived -n -l -D -P -f conf/keepalived-h$n.conf \
      -p run/ka-h$n.main.pidfile -r run/ka-h$n.vrrp.pidfile >>run/ka-h$n.log 2>&1 </dev/null &
  echo $! > run/ka-h$n.pid
done
