#!/bin/bash
# bridge namespace fl-br; host namespaces fl-h1..3 (127.1.0.1-3/16), fl-client (127.1.0.50/16),
# control machine = root namespace via fl-root (127.1.0.254/16)
set -e
ip netns add fl-br
ip -n fl-br link set lo up
ip -n fl-br link add br0 type bridge
ip -n fl-br link set br0 up
add_host() { # name addr
  ip netns add fl-$1
  ip link add p-$1 netns fl-br type veth peer name eth0 netns fl-$1
  ip -n fl-br link set p-$1 master br0 up
  ip netns exec fl-$1 sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.eth0.route_localnet=1 net.ipv4.ip_nonlocal_bind=1
  ip -n fl-$1 addr add $2/16 dev eth0
  ip -n fl-$1 link set eth0 up
  ip -n fl-$1 link set lo up        # what systemd in a container does anyway
}
add_host h1 127.1.0.1
add_host h2 127.1.0.2
add_host h3 127.1.0.3
add_host client 127.1.0.50
./root-veth-up.sh
