#!/bin/sh
# notify script: keepalived passes TYPE NAME STATE PRIORITY
echo "$(date +%s.%N) $(ip -br addr show eth0 | awk '{print $3}') $*" >> /tmp/fleet-lab/run/notify.log
