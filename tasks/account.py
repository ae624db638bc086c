"""The service account: a system user and group, no login shell, no home under /home."""
from pyinfra import host
from pyinfra.operations import server

from gateway.settings import for_host

s = for_host(host)

server.group(
    name=f"System group {s.group} exists with gid {s.gid}",
    group=s.group,
    gid=s.gid,
    system=True,
)

server.user(
    name=f"System user {s.user} exists with uid {s.uid}, no login shell, home {s.home}",
    user=s.user,
    uid=s.uid,
    group=s.group,
    shell="/usr/sbin/nologin",
    home=s.home,
    create_home=False,
    system=True,
)
