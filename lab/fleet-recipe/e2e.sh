#!/bin/bash
# e2e.sh: whole recipe from nothing to a 2-host keepalived VIP in nspawn containers, with timings.
# Run from /tmp/fleet-lab; undo with ./teardown.sh && rm -rf roots
cd /tmp/fleet-lab; mkdir -p run
T0=$(date +%s%N); ms() { echo $(( ($(date +%s%N)-T0)/1000000 )); }
SSHO="-i ssh/id_ed25519 -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=2"
[ -f ssh/id_ed25519 ] || { mkdir -p ssh; ssh-keygen -q -t ed25519 -N '' -f ssh/id_ed25519 -C fleet-lab; }
./net-up.sh; echo "[$(ms) ms] namespaces + bridge + root-ns veth up"
setsid python3 bin/fleet-proxy.py 127.1.0.254 3128 >run/proxy.log 2>&1 </dev/null & echo $! > run/proxy.pid
./prep-root.sh 1; ./prep-root.sh 2; echo "[$(ms) ms] roots copied + prepared"
./nspawn-up.sh 1; ./nspawn-up.sh 2
for n in 1 2; do until ssh $SSHO root@127.1.0.$n true 2>/dev/null; do sleep 0.2; done; done
echo "[$(ms) ms] both containers answer ssh"
for n in 1 2; do ssh $SSHO root@127.1.0.$n 'echo "$(hostname): $(systemctl is-system-running)"'; done
./host-setup.sh 1 150 127.1.0.2 & a=$!; ./host-setup.sh 2 100 127.1.0.1 & b=$!; wait $a $b
echo "[$(ms) ms] keepalived + www on both"
sleep 5; for n in 1 2; do echo "fl-h$n: $(ip -n fl-h$n -br a show eth0 | awk '{print $3,$4}')"; done
echo "fl-client -> VIP: $(ip netns exec fl-client curl -s -m2 http://127.1.0.100:8000/)"
bin/watch.py 7 > run/watch-e2e.log & w=$!; sleep 1.5
echo "stopping www on flh1 (track_script fails -> FAULT) at t=1.5s of the watch below"
ssh $SSHO root@127.1.0.1 'systemctl stop www'; wait $w; cat run/watch-e2e.log
ssh $SSHO root@127.1.0.1 'systemctl start www'
