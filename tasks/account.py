"""The service account: a system user and group, no login shell, no home under /home, never someone else's.

The host's accounts are looked at while pyinfra prepares: an existing account the deploy did not
make (root, www-data, an operator's login, ...) or another account on the wanted uid or gid stops
the whole run before any host is changed.
"""
from pyinfra import host
from pyinfra.api.exceptions import PyinfraError

from gateway import account
from gateway.facts import Account
from gateway.operations import system_account
from gateway.settings import for_host

s = for_host(host)
want = account.Wanted(user=s.user, group=s.group, uid=s.uid, gid=s.gid, home=s.home, shell="/usr/sbin/nologin")
refused = account.problems(host.get_fact(Account, user=s.user, group=s.group, uid=s.uid, gid=s.gid), want)
if refused:
    raise PyinfraError(
        f"{host.name}: the service account cannot be set up:\n" + "\n".join(f"  - {p}" for p in refused)
        + f"\nFix: {want.fix()}.\nNothing was changed on any host."
    )

system_account(
    name=f"System user {s.user} (uid {s.uid}) in group {s.group} (gid {s.gid}) exists, no login shell, home {s.home}",
    want=want,
)
