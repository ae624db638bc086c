#!/bin/bash
# one http.server per host namespace on 0.0.0.0:8000 (answers on its own address and on the VIP when it holds it)
cd /tmp/fleet-lab
for n in "$@"; do
  ip netns exec fl-h$n setsid python3 -m http.server 8000 --bind 0.0.0.0 --directory www/h$n >run/http-h$n.log 2>&1 </dev/null &
  echo $! > run/http-h$n.pid
done
