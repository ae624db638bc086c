"""Which existing account the deploy may adjust (fast: the Account fact's data in, problems and commands out)."""
from __future__ import annotations

from gateway.account import MARKER, Wanted, commands, problems

WANT = Wanted(user="litellm", group="litellm", uid=1002, gid=1002, home="/var/lib/litellm", shell="/usr/sbin/nologin")


def user(name="litellm", uid=1002, gid=1002, comment=MARKER, home="/var/lib/litellm", shell="/usr/sbin/nologin"):
    return {"name": name, "uid": uid, "gid": gid, "comment": comment, "home": home, "shell": shell}


def group(name="litellm", gid=1002):
    return {"name": name, "gid": gid, "members": []}


def fact(u=None, g=None, uid_holder=None, gid_holder=None):
    return {"user": u, "group": g, "uid_holder": uid_holder, "gid_holder": gid_holder}


def test_a_fresh_host_gets_the_group_and_a_marked_system_user():
    assert problems(fact(), WANT) == []
    steps = commands(fact(), WANT)
    assert steps[0] == "groupadd --system --gid 1002 litellm"
    assert steps[1].startswith("useradd --system --no-create-home -u 1002 -g 1002") and f"-c '{MARKER}'" in steps[1]


def test_its_own_account_is_put_back_and_left_alone_when_right():
    mine = fact(user(shell="/bin/bash"), group(), user(), group())
    assert problems(mine, WANT) == []
    assert commands(mine, WANT) == [f"usermod -u 1002 -g 1002 -d /var/lib/litellm -s /usr/sbin/nologin "
                                    f"-c '{MARKER}' litellm"]
    assert commands(fact(user(), group(), user(), group()), WANT) == []


def test_an_unmarked_account_from_an_earlier_deploy_is_adopted_and_marked():
    earlier = fact(user(comment=""), group(), user(comment=""), group())
    assert problems(earlier, WANT) == []
    assert commands(earlier, WANT)[0].startswith("usermod ")


def test_the_issue_s_root_account_is_never_touched():
    root = {"name": "root", "uid": 0, "gid": 0, "comment": "root", "home": "/root", "shell": "/bin/bash"}
    found = problems(fact(root, group("root", 0), None, None), Wanted("root", "root", 1002, 1002, "/var/lib/litellm",
                                                                      "/usr/sbin/nologin"))
    assert any("user root already exists (uid 0" in p and "will not be taken over" in p for p in found)
    assert any("group root already exists with gid 0, not 1002" in p for p in found)


def test_an_operator_login_or_a_daemon_s_account_is_refused():
    login = user(name="litellm", uid=1000, gid=1000, comment="Ops", home="/home/ops", shell="/bin/bash")
    assert problems(fact(login, group(gid=1000)), WANT)[0].startswith("user litellm already exists (uid 1000, gid 1000")
    www = Wanted("www-data", "www-data", 1002, 1002, "/var/lib/litellm", "/usr/sbin/nologin")
    daemon = user(name="www-data", uid=33, gid=33, comment="www-data", home="/var/www", shell="/usr/sbin/nologin")
    found = problems(fact(daemon, group("www-data", 33)), www)
    assert found[0] == ("user www-data already exists (uid 33, gid 33, home /var/www, shell /usr/sbin/nologin) "
                        "and was not made by this deploy; it will not be taken over")
    assert found[1] == "group www-data already exists with gid 33, not 1002 (litellm_gid); it will not be renumbered"
    lookalike = user(comment="", shell="/bin/bash")  # right ids, but a login shell: not evidently ours
    assert "will not be taken over" in problems(fact(lookalike, group(), lookalike, group()), WANT)[0]


def test_someone_else_on_the_wanted_uid_or_gid_is_refused():
    found = problems(fact(None, None, user(name="alice", comment="Alice"), group(name="alice")), WANT)
    assert "uid 1002 (litellm_uid) belongs to user alice" in found
    assert "gid 1002 (litellm_gid) belongs to group alice" in found
