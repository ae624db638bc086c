#!/bin/bash
# host-setup.sh N PRIO PEER: (over SSH) install keepalived+curl, a :8000 test web server, keepalived.conf with VIP
set -e
n=$1; prio=$2; peer=$3; R=/tmp/fleet-lab/roots/h$n
SSHO="-i /tmp/fleet-lab/ssh/id_ed25519 -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o LogLevel=ERROR -o BatchMode=yes -o ConnectTimeout=2"
mkdir -p $R/srv/www; echo "hello from container flh$n" > $R/srv/www/index.html
cp /tmp/fleet-lab/conf/www.service $R/etc/systemd/system/www.service
ssh $SSHO root@127.1.0.$n "update-ca-certificates >/dev/null 2>&1; export DEBIAN_FRONTEND=noninteractive; S=\$(date +%s%N);
  apt-get update -q >/tmp/u.log 2>&1 && apt-get install -y -q keepalived curl >/tmp/i.log 2>&1; echo \"flh$n: apt-get update+install keepalived curl rc=\$? in \$(( (\$(date +%s%N)-S)/1000000 )) ms, \$(grep -o '[0-9]* newly installed' /tmp/i.log)\"
  systemctl daemon-reload; systemctl enable -q --now www"
cat > $R/etc/keepalived/chk_http.sh <<EOT
#!/bin/sh
exec /usr/bin/curl -fsS -o /dev/null -m 1 http://127.1.0.$n:8000/
EOT
chmod 755 $R/etc/keepalived/chk_http.sh
sed -e "s/flh1/flh$n/; s/priority 150/priority $prio/; s/unicast_src_ip 127.1.0.1/unicast_src_ip 127.1.0.$n/; s/^        127.1.0.2$/        $peer/" \
    /tmp/fleet-lab/conf/container-keepalived-h1.conf > $R/etc/keepalived/keepalived.conf
ssh $SSHO root@127.1.0.$n "systemctl restart keepalived; systemctl is-active keepalived www | tr '\n' ' '; echo"
