"""The service account: which existing account the deploy may adjust, and what it runs to get there.

The deploy creates its system user and group, or adjusts an account that is evidently its own: one
it created before (its comment says so), or a system account with exactly the wanted uid and gid
and no login shell (a gateway deployed before accounts were marked). Any other account of that
name, or another account holding the wanted uid or gid, is someone else's: the deploy stops
before changing any host, naming the account, what differs and how to choose another.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass

MARKER = "LiteLLM gateway service account (managed by the gateway deploy)"
NO_LOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false")


@dataclass(frozen=True)
class Wanted:
    user: str
    group: str
    uid: int
    gid: int
    home: str
    shell: str

    def fix(self) -> str:
        return ("set litellm_user/litellm_group (and litellm_uid/litellm_gid) in the inventory to a name and ids "
                "no other account uses, or remove that account from the host if it is a leftover")


def problems(current: dict, want: Wanted) -> list[str]:
    """Why the deploy must not touch the host's accounts; empty when it may. `current` is the Account fact."""
    user, group = current["user"], current["group"]
    uid_holder, gid_holder = current["uid_holder"], current["gid_holder"]
    found = []
    ours = user is not None and is_ours(user, want)
    if user is not None and not ours:
        found.append(f"user {want.user} already exists (uid {user['uid']}, gid {user['gid']}, home {user['home']}, "
                     f"shell {user['shell']}) and was not made by this deploy; it will not be taken over")
    if uid_holder is not None and uid_holder["name"] != want.user:
        found.append(f"uid {want.uid} (litellm_uid) belongs to user {uid_holder['name']}")
    if group is not None and group["gid"] != want.gid and not (ours and user["gid"] == group["gid"]):
        found.append(f"group {want.group} already exists with gid {group['gid']}, not {want.gid} (litellm_gid); "
                     f"it will not be renumbered")
    if gid_holder is not None and gid_holder["name"] != want.group:
        found.append(f"gid {want.gid} (litellm_gid) belongs to group {gid_holder['name']}")
    return found


def is_ours(user: dict, want: Wanted) -> bool:
    if user["comment"] == MARKER:
        return True
    return user["uid"] == want.uid and user["gid"] == want.gid and user["shell"] in NO_LOGIN


def commands(current: dict, want: Wanted) -> list[str]:
    """What brings the accounts to `want`; [] when they are already so. Only call when problems() is empty."""
    steps = []
    group = current["group"]
    if group is None:
        steps.append(f"groupadd --system --gid {want.gid} {shlex.quote(want.group)}")
    elif group["gid"] != want.gid:
        steps.append(f"groupmod --gid {want.gid} {shlex.quote(want.group)}")
    # Short options: useradd and usermod spell the long one for the home differently.
    options = (f"-u {want.uid} -g {want.gid} -d {shlex.quote(want.home)} -s {shlex.quote(want.shell)} "
               f"-c {shlex.quote(MARKER)} {shlex.quote(want.user)}")
    user = current["user"]
    if user is None:
        steps.append(f"useradd --system --no-create-home {options}")
    elif (user["uid"], user["gid"], user["home"], user["shell"], user["comment"]) != (
            want.uid, want.gid, want.home, want.shell, MARKER):
        steps.append(f"usermod {options}")
    return steps
