#!/bin/bash
# try route_localnet variants on a fresh pair of namespaces (fl-ta server, fl-tb client) on the fl-br bridge
try() { # $1 = sysctl args for ta, $2 for tb
  for t in ta tb; do ip netns add fl-$t; ip link add p-$t netns fl-br type veth peer name eth0 netns fl-$t; ip -n fl-br link set p-$t master br0 up; done
  ip -n fl-ta addr add 127.1.1.1/16 dev eth0; ip -n fl-tb addr add 127.1.1.2/16 dev eth0
  # set sysctls after the veth exists (eth0 key) 
  for kv in $1; do ip netns exec fl-ta sysctl -qw $kv; done
  for kv in $2; do ip netns exec fl-tb sysctl -qw $kv; done
  ip -n fl-ta link set eth0 up; ip -n fl-tb link set eth0 up; ip -n fl-ta link set lo up; ip -n fl-tb link set lo up
  ip netns exec fl-ta timeout 6 python3 -m http.server 8001 --bind 127.1.1.1 >/dev/null 2>&1 & sleep 1.5
  r=$(ip netns exec fl-tb curl -s -o /dev/null -w '%{http_code}' -m 3 http://127.1.1.1:8001/ 2>&1); echo "ta[$1] tb[$2] -> $r"
  wait
  ip netns del fl-ta; ip netns del fl-tb; while ip -n fl-br link show p-ta >/dev/null 2>&1 || ip -n fl-br link show p-tb >/dev/null 2>&1; do sleep 0.2; done
}
A=net.ipv4.conf.all.route_localnet=1; E=net.ipv4.conf.eth0.route_localnet=1
try "" ""
try "$A $E" ""
try "" "$A $E"
try "$E" "$E"
try "$A" "$A"
try "$A $E" "$A $E"
