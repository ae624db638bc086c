#!/bin/bash
# nspawn-up.sh N: boot roots/hN as container flhN inside network namespace fl-hN (detached; log in run/)
cd /tmp/fleet-lab
n=$1
setsid systemd-nspawn --network-namespace-path=/run/netns/fl-h$n -D roots/h$n -b \
    --register=no --keep-unit -M flh$n --private-network >>run/nspawn-h$n.log 2>&1 </dev/null &
echo $! > run/nspawn-h$n.pid
