#!/bin/bash
# prep-root.sh N: copy the cached root to roots/hN and give it per-host settings (original never modified)
set -e
n=$1; R=/tmp/fleet-lab/roots/h$n; SRC=/var/cache/litellm-lab/bookworm-base
mkdir -p /tmp/fleet-lab/roots; cp -a $SRC $R
echo flh$n > $R/etc/hostname
printf 'ListenAddress 127.1.0.%s\n' $n > $R/etc/ssh/sshd_config.d/fleet.conf
install -d -m 700 $R/root/.ssh
install -m 600 /tmp/fleet-lab/ssh/id_ed25519.pub $R/root/.ssh/authorized_keys
rm -f $R/etc/ssh/ssh_host_*; ssh-keygen -q -A -f $R          # own host keys per copy
# packages through the control machine's proxy (no route out of the namespace)
printf 'Acquire::http::Proxy "http://127.1.0.254:3128";\n' > $R/etc/apt/apt.conf.d/80fleet-proxy
printf '[global]\nproxy = http://127.1.0.254:3128\n' > $R/etc/pip.conf
# this workplace's egress re-signs HTTPS: the container must trust the same extra CAs as the control machine
cp /usr/local/share/ca-certificates/*.crt $R/usr/local/share/ca-certificates/ 2>/dev/null || true
