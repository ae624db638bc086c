#!/bin/bash
# mkconf.sh N PRIORITY MODE(multicast|unicast) TRACK(yes|no) -> conf/keepalived-hN.conf
n=$1; prio=$2; mode=$3; track=$4
peers=""; for p in 1 2 3; do [ $p != $n ] && peers="$peers 127.1.0.$p"; done
{
cat <<EOT
global_defs {
    router_id fl-h$n
    enable_script_security
    script_user root
    # vrrp_strict is NOT set (it is off by default)
}
EOT
[ "$track" = yes ] && cat <<EOT
vrrp_script chk_http {
    script "/tmp/fleet-lab/bin/chk_http.sh 127.1.0.$n"
    interval 1
    timeout 2
    fall 2
    rise 2
}
EOT
cat <<EOT
vrrp_instance VI_FL {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority $prio
    advert_int 1
EOT
[ "$mode" = unicast ] && echo "    unicast_src_ip 127.1.0.$n
    unicast_peer {$(for p in $peers; do printf '\n        %s' $p; done)
    }"
cat <<EOT
    virtual_ipaddress {
        127.1.0.100/16 dev eth0 scope host
    }
    notify /tmp/fleet-lab/bin/notify.sh
EOT
[ "$track" = yes ] && cat <<EOT
    track_script {
        chk_http
    }
EOT
echo "}"
} > conf/keepalived-h$n.conf
