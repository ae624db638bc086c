#!/bin/bash
# control machine (root namespace) joins the bridge: fl-root (root ns, 127.1.0.254/16) <-> p-root (fl-br)
set -e
ip link add fl-root type veth peer name p-root netns fl-br
ip -n fl-br link set p-root master br0 up
sysctl -qw net.ipv4.conf.fl-root.route_localnet=1   # only this interface; 'all' left at 0 in the root ns
ip addr add 127.1.0.254/16 dev fl-root
ip link set fl-root up
