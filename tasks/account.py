"""The service account: a system user and group, no login shell, no home under /home."""
from pyinfra import host

from gateway.operations import system_account
from gateway.settings import for_host

s = for_host(host)

system_account(
    name=f"System user {s.user} (uid {s.uid}) in group {s.group} (gid {s.gid}) exists, no login shell, home {s.home}",
    user=s.user,
    group=s.group,
    uid=s.uid,
    gid=s.gid,
    home=s.home,
    shell="/usr/sbin/nologin",
)
