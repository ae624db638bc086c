#!/bin/bash
# wait-running.sh N [TIMEOUT]: poll until systemd in container flhN says running/degraded; print seconds
n=$1; t=${2:-60}; T0=$(date +%s.%N)
while :; do
  P=$(cat /tmp/fleet-lab/run/nspawn-h$n.pid); C=$(pgrep -P $P -x systemd | head -1)
  if [ -n "$C" ]; then s=$(nsenter -t $C -a systemctl is-system-running 2>/dev/null); case $s in running|degraded) break;; esac; fi
  [ $(echo "$(date +%s.%N) - $T0 > $t" | bc) = 1 ] && { echo "timeout ($s)"; exit 1; }
  sleep 0.2
done
echo "flh$n: $s after $(echo "$(date +%s.%N) - $T0" | bc) s"
