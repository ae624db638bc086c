"""A fleet's settings and files, control side: one floating address, every gateway a peer of the others."""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway import tls
from gateway.inventory import gateway_group, with_fleet_members
from gateway.services import fleet_address
from gateway.services.registry import managed_files, rendered
from gateway.settings import SettingsError, load
from on_host import shared_limits as on_host_limits
from tests.test_settings import GOOD_KEY, seed_data

REPO = Path(__file__).resolve().parent.parent

GATEWAYS = [("gw-a.example.org", {"litellm_bind_address": "10.1.2.11"}),
            ("gw-b.example.org", {"litellm_bind_address": "10.1.2.12"}),
            ("gw-c.example.org", {"litellm_bind_address": "10.1.2.13"})]
# Cleartext, said in words: most tests here look at the fleet's plain parts; TLS has tests of its own.
FLEET = {"litellm_master_key": GOOD_KEY, "litellm_fleet_address": "10.1.2.100/24",
         "litellm_fleet_name": "llm-api.example.org", "litellm_tls": "none-i-accept-cleartext"}


def fleet_settings(host: int = 0, **extra):
    data = with_fleet_members(GATEWAYS, seed_data(**{**FLEET, **extra}))
    return load({**data, **GATEWAYS[host][1]}).resolved(2)


def test_the_group_lists_its_own_gateways_as_the_fleet_in_inventory_order():
    s = fleet_settings(1)
    assert s.fleet.members == tuple((name, data["litellm_bind_address"]) for name, data in GATEWAYS)
    assert (s.fleet.address, s.fleet.prefix, s.fleet.interface, s.fleet.router_id) == ("10.1.2.100", 24, "eth0", 51)
    assert [s.fleet.priority(name) for name, _ in GATEWAYS] == [200, 190, 180]
    assert s.fleet.peers("gw-b.example.org") == ["10.1.2.11", "10.1.2.13"]
    assert not s.fleet.scope_host


def test_without_a_fleet_address_nothing_of_a_fleet_is_rendered():
    s = load(seed_data(litellm_master_key=GOOD_KEY)).resolved(2)
    assert s.fleet is None
    assert "frontend fleet" not in rendered("litellm-front.cfg.j2", s, "gw")
    assert not [f.path for f in managed_files(s, "gw")
                if ("fleet" in f.path or "keepalived" in f.path) and not f.path.startswith("/usr/local/lib/")]


@pytest.mark.parametrize("extra, where, says", [
    ({"litellm_bind_address": "0.0.0.0"}, "litellm_bind_address", "give each gateway its own address"),
    ({"litellm_master_key": None}, "litellm_master_key", "a fleet serves one key on every gateway"),
    ({"litellm_fleet_address": "10.1.2.300"}, "litellm_fleet_address", "not an IPv4 address"),
    ({"litellm_fleet_address": "10.1.2.100/40"}, "litellm_fleet_address", "not an IPv4 address"),
    ({"litellm_fleet_address": "fe80::1"}, "litellm_fleet_address", "not an IPv4 address"),
    ({"litellm_fleet_address": "10.1.2.11"}, "litellm_fleet_members", "cannot be a gateway's own address"),
    ({"litellm_fleet_router_id": 256}, "litellm_fleet_router_id", "from 1 to 255"),
    ({"litellm_fleet_interface": "eth0; reboot"}, "litellm_fleet_interface", "interface name"),
    ({"litellm_fleet_name": "not a name!"}, "litellm_fleet_name", "not a DNS name"),
])
def test_a_fleet_that_cannot_work_is_refused_naming_the_setting(extra, where, says):
    hosts = [(name, {**data, **({"litellm_bind_address": extra["litellm_bind_address"]}
                                if "litellm_bind_address" in extra else {})}) for name, data in GATEWAYS]
    data = seed_data(**{**FLEET, **{k: v for k, v in extra.items() if k != "litellm_bind_address"}})
    with pytest.raises(SystemExit) as refused:
        gateway_group(hosts, data)
    assert f"{where}: " in str(refused.value) and says in str(refused.value), refused.value
    assert GOOD_KEY not in str(refused.value)


def test_two_gateways_on_one_address_are_refused():
    hosts = [GATEWAYS[0], ("gw-twin.example.org", dict(GATEWAYS[0][1]))]
    with pytest.raises(SystemExit, match="two gateways share one address"):
        gateway_group(hosts, seed_data(**FLEET))


def test_fleet_settings_without_the_address_are_refused():
    with pytest.raises(SettingsError, match="litellm_fleet_name: is set, but litellm_fleet_address is None"):
        load(seed_data(litellm_master_key=GOOD_KEY, litellm_fleet_name="llm-api.example.org"))


def test_every_front_listens_on_the_fleet_address_and_sends_to_every_gateways_front():
    cfg = rendered("litellm-front.cfg.j2", fleet_settings(2), "gw-c.example.org")
    assert "bind 10.1.2.13:4000\n" in cfg  # its own address, as before
    assert "bind 10.1.2.100:4000 transparent\n" in cfg
    fleet_backend = cfg.split("backend gateways", 1)[1].split("\nfrontend ", 1)[0]
    assert "option httpchk GET /health/readiness" in fleet_backend
    assert [line.split()[1:3] for line in fleet_backend.splitlines() if line.strip().startswith("server ")] == [
        [name, f"{data['litellm_bind_address']}:4000"] for name, data in GATEWAYS]


def test_with_tls_the_fronts_verify_each_other_and_the_certificate_names_the_fleet(tmp_path):
    s = fleet_settings(0, litellm_tls="own-ca", litellm_tls_ca_dir=str(tmp_path / "ca"))
    cfg = rendered("litellm-front.cfg.j2", s, "gw-a.example.org")
    assert "bind 10.1.2.100:4000 transparent ssl crt" in cfg
    assert ("server gw-b.example.org 10.1.2.12:4000 ssl verify required ca-file /etc/haproxy/litellm-fleet-ca.crt "
            "verifyhost gw-b.example.org") in cfg
    table = {f.path: f for f in managed_files(s, "gw-a.example.org")}
    ca = table["/etc/haproxy/litellm-fleet-ca.crt"]
    assert ca.content == (tmp_path / "ca" / "ca.crt").read_bytes() and ca.mode == "644"
    order = list(table)
    assert order.index("/etc/haproxy/litellm-fleet-ca.crt") < order.index("/etc/haproxy/litellm-front.cfg")
    assert {"10.1.2.100", "llm-api.example.org", "gw-a.example.org"} <= set(tls.material(s, "gw-a.example.org").names)


def test_operator_certificates_without_a_ca_file_are_verified_with_the_systems_cas(tmp_path):
    from tests.test_tls import _operator_pair  # a certificate of the test's own for the gateway's name
    cert, key, _ = _operator_pair(tmp_path, "gw-a.example.org")
    s = fleet_settings(0, litellm_tls={"cert_file": str(cert), "key_file": str(key)})
    assert "ca-file @system-ca verifyhost" in rendered("litellm-front.cfg.j2", s, "gw-a.example.org")
    assert "/etc/haproxy/litellm-fleet-ca.crt" not in {f.path for f in managed_files(s, "gw-a.example.org")}


@pytest.mark.skipif(not shutil.which("keepalived"), reason="keepalived is installed by ./run setup")
def test_keepalived_accepts_the_rendered_config_and_refuses_a_broken_one(tmp_path):
    s = fleet_settings(1)
    conf = rendered("litellm-fleet.conf.j2", s, "gw-b.example.org")
    assert "priority 190" in conf and "nopreempt" in conf and "check_unicast_src" in conf
    assert "unicast_src_ip 10.1.2.12" in conf and "10.1.2.11\n" in conf and "10.1.2.13\n" in conf
    assert "10.1.2.100/24 dev eth0\n" in conf  # not scope host: only a lab's 127/8 address needs it
    good, bad = tmp_path / "good.conf", tmp_path / "bad.conf"
    good.write_text(conf)
    bad.write_text(conf.replace("virtual_router_id 51", "virtual_router_id 999"))
    check = [f.validate for f in managed_files(s, "gw-b.example.org") if f.path == fleet_address.CONFIG][0]
    assert subprocess.run(check.replace("{path}", str(good)), shell=True, capture_output=True).returncode == 0
    refused = subprocess.run(check.replace("{path}", str(bad)), shell=True, capture_output=True, text=True)
    assert refused.returncode != 0 and "999" in refused.stdout + refused.stderr


def test_a_lab_fleet_on_loopback_puts_its_address_in_scope_host():
    data = with_fleet_members([("a", {"litellm_bind_address": "127.1.0.1"})],
                              seed_data(litellm_master_key=GOOD_KEY, litellm_fleet_address="127.1.0.100/16"))
    s = load({**data, "litellm_bind_address": "127.1.0.1"}).resolved(2)
    assert "127.1.0.100/16 dev eth0 scope host" in rendered("litellm-fleet.conf.j2", s, "a")


def test_the_fleets_limits_live_in_redis_behind_sentinel_with_a_password_that_is_not_the_key():
    from gateway.services.store import password

    first, second = fleet_settings(0), fleet_settings(1)
    assert password(first) == password(second) != GOOD_KEY and GOOD_KEY not in password(first)
    config = rendered("config.yaml.j2", second, "gw-b.example.org")
    # Its own sentinel first: one on a host killed outright is never the first asked.
    assert 'sentinel_nodes: [["10.1.2.12", 26380], ["10.1.2.11", 26380], ["10.1.2.13", 26380]]' in config
    assert 'sentinel_nodes: [["10.1.2.11", 26380], ["10.1.2.12", 26380], ["10.1.2.13", 26380]]' in \
        rendered("config.yaml.j2", first, "gw-a.example.org")
    assert "url:" not in config.split("coordination_redis:")[1].split("\n\n")[0]  # a url would win over Sentinel
    assert password(first) not in config and "os.environ/LITELLM_REDIS_PASSWORD" in config
    redis = rendered("redis.conf.j2", second, "gw-b.example.org")
    assert "bind 10.1.2.12\n" in redis and "\nport 6380\n" in redis and "replicaof 10.1.2.11 6380" in redis
    assert password(first) not in redis
    assert "replicaof" not in rendered("redis.conf.j2", first, "gw-a.example.org")
    sentinel = rendered("sentinel.conf.j2", second, "gw-b.example.org")
    assert "sentinel monitor litellm-fleet 10.1.2.11 6380 2" in sentinel and password(first) not in sentinel
    env = rendered("litellm.env.j2", second, "gw-b.example.org")
    assert f"LITELLM_REDIS_PASSWORD={password(first)}\n" in env and GOOD_KEY not in env


def test_a_new_master_key_restarts_redis_and_sentinel_and_nothing_else_of_the_store():
    other_key = "sk-" + "9f8e7d6c5b4a3928" * 3
    before = {f.path: f.sha256 for f in managed_files(fleet_settings(0), "gw-a.example.org")}
    after = {f.path: f.sha256
             for f in managed_files(fleet_settings(0, litellm_master_key=other_key), "gw-a.example.org")}
    changed = sorted(path for path in before if before[path] != after[path])
    assert changed == ["/etc/litellm/litellm.env", "/etc/litellm/redis.conf", "/etc/litellm/sentinel.conf"]


def test_a_master_key_rotation_lets_both_keys_and_both_store_passwords_in_until_a_deploy_without_it(tmp_path):
    """litellm_previous_master_key: the hook also lets the old key in (the hosts get its SHA-256 only),
    Redis and Sentinel also accept the old key's password, and every server uses the new one; a
    deploy without it drops both. Without a rotation the store's files are as they always were."""
    import ast
    import hashlib

    from gateway.services import proxy
    from gateway.services.store import Limits, derived, password

    new_key = "sk-" + "9f8e7d6c5b4a3928" * 3
    plain = fleet_settings(0)
    rotating = fleet_settings(0, litellm_master_key=new_key, litellm_previous_master_key=GOOD_KEY)
    env = rendered("litellm.env.j2", rotating, "gw-a.example.org")
    assert f"LITELLM_PREVIOUS_MASTER_KEY_SHA256={hashlib.sha256(GOOD_KEY.encode()).hexdigest()}\n" in env
    assert f"LITELLM_REDIS_PASSWORD={password(rotating)}\n" in env and password(rotating) == derived(new_key)
    assert f"LITELLM_REDIS_PREVIOUS_PASSWORD={derived(GOOD_KEY)}\n" in env and GOOD_KEY not in env
    assert "PREVIOUS" not in rendered("litellm.env.j2", plain, "gw-a.example.org")
    # The hook reads the variable the env file sets (it runs inside the proxy: its source is read here).
    hook = ast.parse((REPO / "in_proxy/gateway_auth.py").read_text())
    names = {n.targets[0].id: n.value.value for n in hook.body
             if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Constant)}
    assert names["PREVIOUS_KEY_VAR"] == proxy.HOOK["previous_key_var"]
    # A rotation begun or ended restarts Redis and Sentinel (their files carry the passwords' tag);
    # without one, the tag is the one deployments have always had.
    assert Limits(plain).password_tag == hashlib.sha256(password(plain).encode()).hexdigest()[:12]
    assert Limits(rotating).password_tag != Limits(fleet_settings(0, litellm_master_key=new_key)).password_tag
    assert "--previous-variable LITELLM_REDIS_PREVIOUS_PASSWORD" in Limits(rotating).write_auth("redis")
    # On the host: both passwords let clients in, the new one is what the server uses towards the others.
    env_file = tmp_path / "litellm.env"
    env_file.write_text("LITELLM_REDIS_PASSWORD=new\nLITELLM_REDIS_PREVIOUS_PASSWORD=old\n")
    me = f"{pwd.getpwuid(os.getuid()).pw_name}:{grp.getgrgid(os.getgid()).gr_name}"
    for kind, seed in (("redis", []), ("sentinel", ["--seed", str(tmp_path / "seed")])):
        (tmp_path / "seed").write_text("sentinel monitor litellm-fleet 10.1.2.11 6380 2\n")
        out = tmp_path / f"{kind}.conf"
        args = [kind, "--env-file", str(env_file), "--variable", "LITELLM_REDIS_PASSWORD", "--out", str(out),
                "--owner", me, *seed]
        assert on_host_limits.main([*args, "--previous-variable", "LITELLM_REDIS_PREVIOUS_PASSWORD"]) == 0
        text = out.read_text()
        assert "user default on >new >old ~* &* +@all\n" in text and "requirepass" not in text
        assert ("masterauth new\n" in text) if kind == "redis" else ("sentinel auth-pass litellm-fleet new\n" in text)
        env_file.write_text("LITELLM_REDIS_PASSWORD=new\n")  # the rotation's end: the new one alone
        assert on_host_limits.main([*args, "--previous-variable", "LITELLM_REDIS_PREVIOUS_PASSWORD"]) == 0
        assert "requirepass new\n" in out.read_text() and "old" not in out.read_text()
        env_file.write_text("LITELLM_REDIS_PASSWORD=new\nLITELLM_REDIS_PREVIOUS_PASSWORD=old\n")


def test_a_previous_master_key_is_checked_and_never_shown():
    with pytest.raises(SettingsError) as refused:
        fleet_settings(0, litellm_previous_master_key=GOOD_KEY)
    assert "litellm_previous_master_key: is the master key itself" in str(refused.value)
    with pytest.raises(SettingsError) as refused:
        fleet_settings(0, litellm_previous_master_key="sk-short")
    said = str(refused.value)
    assert "litellm_previous_master_key: is not a master key" in said and "sk-short" not in said
    old = "sk-" + "0a1b2c3d4e5f6789" * 3
    s = fleet_settings(0, litellm_master_key="sk-" + "9f8e7d6c5b4a3928" * 3, litellm_previous_master_key=old)
    assert old not in repr(s)


def test_sentinels_own_file_is_made_anew_only_for_a_new_seed_or_password():
    from on_host.shared_limits import sentinel_file

    made = sentinel_file("sentinel monitor litellm-fleet 10.1.2.11 6380 2\n", "pw1", None)
    assert made.startswith("# litellm-gateway seed ") and "sentinel auth-pass litellm-fleet pw1\n" in made
    learned = made + "sentinel known-replica litellm-fleet 10.1.2.12 6380\n"  # what Sentinel writes itself
    assert sentinel_file("sentinel monitor litellm-fleet 10.1.2.11 6380 2\n", "pw1", learned) is None
    assert sentinel_file("sentinel monitor litellm-fleet 10.1.2.11 6380 2\n", "pw2", learned) is not None
    assert sentinel_file("sentinel monitor litellm-fleet 10.1.2.12 6380 2\n", "pw1", learned) is not None


def test_the_root_run_password_write_never_follows_a_link_the_service_user_planted(tmp_path):
    """litellm-redis/-sentinel's ExecStartPre runs as root in a directory the service user owns."""
    victim = tmp_path / "victim"
    victim.write_text("root's own file\n")
    owner = f"{pwd.getpwuid(os.getuid()).pw_name}:{grp.getgrgid(os.getgid()).gr_name}"
    out = tmp_path / "redis-auth.conf"
    (tmp_path / "redis-auth.conf.new").symlink_to(victim)  # planted where the new file is made
    on_host_limits.write_private(str(out), "requirepass x\n", owner)
    assert victim.read_text() == "root's own file\n"
    assert out.read_text() == "requirepass x\n" and not out.is_symlink() and (out.stat().st_mode & 0o777) == 0o600
    out.unlink()
    out.symlink_to(victim)  # planted where the file itself goes: replaced, not written through
    on_host_limits.write_private(str(out), "requirepass y\n", owner)
    assert victim.read_text() == "root's own file\n" and not out.is_symlink()


def test_sentinels_own_file_is_read_only_when_it_is_a_regular_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("sentinel monitor stolen\n")
    link = tmp_path / "sentinel.conf"
    link.symlink_to(secret)
    assert on_host_limits.read_own(str(link)) is None  # a planted link is not read as root
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert on_host_limits.read_own(str(fifo)) is None  # and a FIFO does not hang the start
    assert on_host_limits.read_own(str(secret)) == "sentinel monitor stolen\n"
    assert on_host_limits.read_own(str(tmp_path / "missing")) is None


def test_redis_and_sentinel_answer_the_fleets_gateways_only(tmp_path):
    s = fleet_settings(1)
    rows = {f.path: f for f in managed_files(s, "gw-b.example.org", "{}")}
    rules = rows["/etc/litellm/fleet-store.nft"]
    text = rules.content.decode()
    assert "tcp dport { 6380, 26380 } ip saddr { 10.1.2.11, 10.1.2.12, 10.1.2.13 } accept" in text
    assert text.rstrip().splitlines()[-3].strip() == "tcp dport { 6380, 26380 } drop"
    assert rules.restarts == ("litellm-sentinel.service",) and rules.validate.startswith("/usr/sbin/nft -c -f")
    for unit in ("litellm-redis.service", "litellm-sentinel.service"):
        assert "ExecStartPre=+/usr/sbin/nft -f /etc/litellm/fleet-store.nft\n" \
            in rows[f"/etc/systemd/system/{unit}"].content.decode()
    if shutil.which("nft") and os.geteuid() == 0:
        (tmp_path / "rules.nft").write_text(text)
        checked = subprocess.run(["nft", "-c", "-f", str(tmp_path / "rules.nft")], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
    standalone = managed_files(load(seed_data(litellm_master_key=GOOD_KEY)).resolved(2), "gw", "{}")
    assert not any("nft" in f.path for f in standalone)
    assert "nft" not in next(f for f in standalone if f.path.endswith("litellm-redis.service")).content.decode()


def test_a_fleet_is_tls_unless_its_inventory_says_cleartext_in_words(tmp_path):
    """Redis, Sentinel and LiteLLM's client speak TLS only, with the front's certificate and the fleet's CA."""
    from gateway.services import front, store

    s = fleet_settings(1, litellm_tls=None, litellm_tls_ca_dir=str(tmp_path / "ca"))
    assert s.tls and s.tls.own_ca and s.scheme == "https"
    limits = store.Limits(s)
    assert limits.tls_ca == front.FLEET_CA
    redis = rendered("redis.conf.j2", s, "gw-b.example.org")
    assert "\nport 0\n" in redis and "\ntls-port 6380\n" in redis and "tls-replication yes" in redis
    assert f"tls-cert-file {store.REDIS_TLS_PEM}\n" in redis and f"tls-ca-cert-file {front.FLEET_CA}\n" in redis
    sentinel = rendered("sentinel.conf.j2", s, "gw-b.example.org")
    assert "\nport 0\n" in sentinel and "\ntls-port 26380\n" in sentinel and "tls-replication yes" in sentinel
    assert f"tls-key-file {store.SENTINEL_TLS_PEM}\n" in sentinel
    client = rendered("config.yaml.j2", s, "gw-b.example.org").split("coordination_redis:")[1]
    assert "ssl: true" in client and f'ssl_ca_certs: "{front.FLEET_CA}"' in client
    assert "ssl_cert_reqs: required" in client
    for kind, copy in (("redis", store.REDIS_TLS_PEM), ("sentinel", store.SENTINEL_TLS_PEM)):
        assert f"--tls-pem {front.TLS_PEM} --tls-out {copy}" in limits.write_auth(kind)
    rows = {f.path: f for f in managed_files(s, "gw-b.example.org", '{"version": 1, "keys": {}}\n')}
    assert set(rows[front.TLS_PEM].restarts) == {"litellm-front.service", "litellm-redis.service",
                                                 "litellm-sentinel.service"}
    assert set(rows[front.FLEET_CA].restarts) == set(rows[front.TLS_PEM].restarts)
    # Said in words, a fleet stays cleartext; the words mean plain HTTP on a single gateway too.
    plain = fleet_settings(1)
    assert plain.tls is None and store.Limits(plain).tls_ca is None
    assert "tls-port" not in rendered("redis.conf.j2", plain, "gw-b.example.org")
    assert "ssl" not in rendered("config.yaml.j2", plain, "gw-b.example.org").split("coordination_redis:")[1]
    assert load(seed_data(litellm_master_key=GOOD_KEY, litellm_tls="none-i-accept-cleartext")).tls is None
    with pytest.raises(SettingsError, match="none-i-accept-cleartext"):
        fleet_settings(1, litellm_tls="none")


def test_the_store_gets_its_own_copy_of_the_certificate_never_through_a_planted_link(tmp_path):
    pem, env = tmp_path / "front.pem", tmp_path / "litellm.env"
    pem.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    env.write_text("LITELLM_REDIS_PASSWORD=p\n")
    me = f"{pwd.getpwuid(os.getuid()).pw_name}:{grp.getgrgid(os.getgid()).gr_name}"
    target, elsewhere = tmp_path / "tls.pem", tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    (tmp_path / "tls.pem.new").symlink_to(elsewhere)
    assert on_host_limits.main(["redis", "--env-file", str(env), "--variable", "LITELLM_REDIS_PASSWORD",
                                "--out", str(tmp_path / "auth.conf"), "--owner", me,
                                "--tls-pem", str(pem), "--tls-out", str(target)]) == 0
    assert target.read_text() == pem.read_text() and oct(target.stat().st_mode)[-3:] == "600"
    assert elsewhere.read_text() == "untouched"
