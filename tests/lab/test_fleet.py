"""A fleet of three gateways at one floating address, in the lab: hosts with network namespaces of
their own on a bridge, keepalived moving 127.1.0.100, every front spreading requests over every
ready gateway, HTTPS verified by the official OpenAI client, host loss and rolling changes under
steady load with every failure counted. One fleet deployment is shared by the whole module."""
from __future__ import annotations

import csv
import io
import json
import re
import shlex
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest

from gateway.services import front, store
from gateway.services.host import HOST_LIB
from lab import control, machines
from lab.faults import release_does_not_start
from lab.fleet import FLEET_CA_DIR, monitoring_urls, write_inventory
from lab.load import PAUSE, SteadyLoad, client
from lab.topology import FLEET_VIP, GATEWAY_PORT, STATE_DIR, backends_of, fleet_hosts
from tests.lab.conftest import Deploy, deploy, wait_for
from tests.lab.test_edge import clients_routes_answer, refused_by_the_front, request
from tests.lab.test_fabfile import fab
from tests.lab.test_openai_features import CLOCK, EMBEDDING_MODEL, TOOLS_MODEL, WEATHER, City

FLEET_CA = front.FLEET_CA  # on each gateway: the CA Redis, Sentinel and LiteLLM verify each other with

pytestmark = pytest.mark.lab
FLEET = fleet_hosts(3)
URL = f"https://{FLEET_VIP}:{GATEWAY_PORT}/v1"
MODEL = "phi3-3.8b"
# The lab's fleet settings bring HTTPS from the lab's own CA (lab/fleet.py). A 10 s backend timeout
# makes the front wait 60 s (3 tries and some) on a request a killed gateway never answers.
TLS: dict = {"litellm_timeout": 10, "litellm_team_keys_file": str(STATE_DIR / "fleet-team-keys.json")}


def on(host, command: str, check: bool = True) -> str:
    return machines.ssh(host, command, check=check).stdout


def holders(among=FLEET) -> list[str]:
    """The hosts whose network namespace holds the address (read from outside: works while one shuts down)."""
    return [h.name for h in among if f" {FLEET_VIP}/" in subprocess.run(
        ["ip", "-n", h.namespace, "-o", "addr", "show"], capture_output=True, text=True).stdout]


def holder():
    [name] = holders()
    return next(h for h in FLEET if h.name == name)


def balancer(host=None) -> dict[str, dict[str, str]]:
    """The holder's backend of gateways, as `show stat` gives it: {short name: row}."""
    host = host or holder()
    script = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'show stat\\n'); "
              "d=b''\nwhile (c:=s.recv(65536)): d+=c\nprint(d.decode())")
    text = on(host, f"python3 -c \"{script}\" {front.ADMIN_SOCKET}").lstrip("# ")
    return {row["svname"].split(".")[0]: row for row in csv.DictReader(io.StringIO(text))
            if row["pxname"] == front.FLEET_BACKEND and row["svname"] not in ("FRONTEND", "BACKEND")}


def all_up() -> bool:
    try:
        return len(holders()) == 1 and all(row["status"] == "UP" for row in balancer().values())
    except Exception:  # a holder changing hands, a front reloading
        return False


@pytest.fixture(scope="module")
def ca_file() -> str:
    return str(FLEET_CA_DIR / "ca.crt")


@pytest.fixture(scope="module")
def fleet(deploy_dir):
    """Three fresh fleet hosts, deployed once with HTTPS from the lab's own CA by the commands of
    docs/recipes.md (Deploy a new fleet) as written: the checks, the deploy, then `fab status`, which
    must find the fleet healthy."""
    from tests.lab.test_recipes import commands, run

    control.ensure_fleet(len(FLEET), fresh=True)
    Path(TLS["litellm_team_keys_file"]).unlink(missing_ok=True)  # team keys of an earlier run
    inventory = write_inventory(deploy_dir / "fleet-inventory.py", FLEET, **TLS)
    checks, deploy_command, status = commands("Deploy a new fleet")
    output = ""
    for command in (checks, deploy_command):
        done = run(command, inventory)
        output += done.stdout + done.stderr
        assert done.returncode == 0, f"{command}:\n{output[-6000:]}"
    wait_for(all_up, 60, "one holder, every gateway UP")
    healthy = wait_for(lambda: (shown := run(status, inventory)).returncode == 0 and shown, 60,
                       "fab status: the fleet healthy")
    assert "NOT" not in healthy.stdout + healthy.stderr, healthy.stdout
    return Deploy(0, output)


@contextmanager
def steady(ca_file: str, clients: int = 4, timeout: float = 30, after: float = 2, pause: float = PAUSE):
    """Load through the fleet's address from before the block until `after` seconds past it. A client
    gives up on a request after `timeout` s (a request a lost host never answers counts then)."""
    with SteadyLoad(URL, control.fleet_key(), MODEL, clients=clients, ca_file=ca_file, timeout=timeout,
                    pause=pause) as load:
        time.sleep(2)
        yield load.outcomes
        time.sleep(after)
    assert load.outcomes.ok > 50, load.outcomes.summary()


def test_a_second_deploy_of_the_fleet_changes_nothing(fleet, deploy_dir):
    again = deploy(deploy_dir, hosts=FLEET, **TLS)
    assert again.returncode == 0, again.output[-4000:]
    assert again.changes == 0, again.output[-4000:]


def test_one_gateway_holds_the_address_and_every_keepalived_runs_hardened(fleet):
    assert len(holders()) == 1
    for host in FLEET:
        assert on(host, "systemctl is-active litellm-fleet.service").strip() == "active"
        assert on(host, "systemctl is-enabled keepalived.service", check=False).strip() == "masked"
        assert "ProtectSystem=strict" in on(host, "systemctl cat litellm-fleet.service")


def test_clients_verify_the_fleet_and_requests_spread_over_every_gateway(fleet, ca_file):
    before = {name: int(row["stot"]) for name, row in balancer().items()}
    sdk = client(URL, control.fleet_key(), ca_file=ca_file)
    assert sorted(m.id for m in sdk.models.list().data)
    with steady(ca_file) as outcomes:
        time.sleep(4)
    assert outcomes.failures == [], outcomes.summary()
    after = {name: int(row["stot"]) for name, row in balancer().items()}
    served = {name: after[name] - before[name] for name in after}
    assert sorted(served) == [h.name for h in FLEET]
    assert all(count >= outcomes.ok // 10 for count in served.values()), (served, outcomes.summary())


def test_plain_http_and_an_unknown_ca_are_refused_at_the_fleet_address(fleet):
    plain = openai.OpenAI(base_url=URL.replace("https", "http"), api_key="sk-canary-plain", max_retries=0, timeout=10)
    with pytest.raises(openai.APIConnectionError):
        plain.models.list()
    unverified = openai.OpenAI(base_url=URL, api_key="sk-canary-ca", max_retries=0, timeout=10,
                               http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context()))
    with pytest.raises(openai.APIConnectionError):
        unverified.models.list()


def test_the_fleet_address_lets_through_the_client_routes_only_without_a_key_and_with_a_team_key(fleet, tmp_path,
                                                                                               ca_file):
    key = team_key(tmp_path, "fleet-edge", "--max-tokens", "64")
    for presented in (None, key):
        assert refused_by_the_front(FLEET_VIP, presented, ca_file=ca_file) == {}
    clients_routes_answer(FLEET_VIP, key, ca_file=ca_file)
    status, body = request(FLEET_VIP, "POST", "/v1/chat/completions", key, json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}).encode(), ca_file=ca_file)
    assert status == 400 and b"limit of 64 tokens" in body, body


def test_tool_calls_structured_outputs_and_embeddings_through_the_fleet_address_with_a_team_key(fleet, tmp_path,
                                                                                               ca_file):
    sdk = client(URL, team_key(tmp_path, "fleet-features", "--max-tokens", "256"), ca_file=ca_file)
    asked = [{"role": "user", "content": "Use get_time for Europe/Paris, then get_weather for Paris."}]
    with sdk.chat.completions.stream(model=TOOLS_MODEL, messages=asked, tools=[WEATHER, CLOCK]) as stream:
        calls = stream.get_final_completion().choices[0].message.tool_calls
    assert [(c.function.name, sorted(json.loads(c.function.arguments))) for c in calls] == [
        ("get_time", ["zone"]), ("get_weather", ["city", "unit"])]
    city = sdk.chat.completions.parse(model="mistral-7b", messages=[{"role": "user", "content": "Paris"}],
                                      response_format=City).choices[0].message.parsed
    assert isinstance(city, City) and city.name
    vectors = sdk.embeddings.create(model=EMBEDDING_MODEL, input=["one", "two"]).data
    assert [len(v.embedding) for v in vectors] == [768, 768]
    with pytest.raises(openai.BadRequestError, match="n=3 is not supported"):
        sdk.chat.completions.create(model=MODEL, messages=asked, n=3)


def test_redis_and_sentinel_answer_the_fleets_gateways_and_nobody_else(fleet):
    """From outside the fleet (this machine, on the fleet's bridge) the ports are silent: packets dropped."""
    for host in FLEET:
        for port in (6380, 26380):
            with pytest.raises(OSError):  # timed out: dropped, not refused
                socket.create_connection((host.address, port), timeout=2).close()
    for host in FLEET:  # while every gateway still reaches every other's Redis and Sentinel
        view = redis_view(host)
        assert view["sentinels"] == len(FLEET) and view["replicas"] == len(FLEET) - 1 and view["primary"], view
    # Between the gateways, TLS only: a cleartext client gets no answer, one that verifies the fleet's CA does.
    first, second = FLEET[0], FLEET[1]
    for port in (6380, 26380):
        ask = (f"REDISCLI_AUTH=$({with_redis_password('print(p)')}) redis-cli --no-auth-warning "
               f"-h {second.address} -p {port}")
        assert "PONG" not in on(first, f"timeout 5 {ask} PING 2>&1 || true")
        assert on(first, f"{ask} --tls --cacert {FLEET_CA} PING").strip() == "PONG"
        assert "certificate verify failed" in on(first, f"{ask} --tls --cacert /etc/ssl/certs/ca-certificates.crt "
                                                        "PING 2>&1 || true")


def test_fab_status_shows_the_fleet_and_a_drain_holds_across_a_reload_until_undrain(fleet, tmp_path, ca_file):
    status = fab(tmp_path, "status", hosts=FLEET, **TLS)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"FLEET {FLEET_VIP}" in status.stdout and f"held by {holder().name}.lab.test" in status.stdout
    target = next(h for h in FLEET if h.name != holder().name)
    drained = fab(tmp_path, "drain", f"{target.name}.lab.test", hosts=FLEET, **TLS)
    assert drained.returncode == 0, drained.stdout + drained.stderr
    try:
        on(holder(), "systemctl reload litellm-front.service")
        assert balancer()[target.name]["status"] == "DRAIN"
        before = int(balancer()[target.name]["stot"])
        with steady(ca_file) as outcomes:
            time.sleep(3)
        assert outcomes.failures == [], outcomes.summary()
        assert int(balancer()[target.name]["stot"]) == before  # not one request went to it
        degraded = fab(tmp_path, "status", hosts=FLEET, **TLS)
        assert degraded.returncode != 0 and "DRAIN" in degraded.stdout, degraded.stdout
    finally:
        back = fab(tmp_path, "undrain", f"{target.name}.lab.test", hosts=FLEET, **TLS)
    assert back.returncode == 0, back.stdout + back.stderr
    wait_for(all_up, 30, "every gateway UP again after undrain")


def test_losing_gateway_hosts_under_load(fleet, ca_file):
    """One gateway stopped cleanly costs no request; another killed outright (a power cut: its link
    down, its processes gone) costs at most the requests it was serving; both come back by booting.
    The one killed holds the rate-limit Redis primary: the others' LiteLLM must not stall on it
    (they ask their own sentinel first; in session 11 they stalled ~30 s, 5 of 364 failed)."""
    others = [h for h in FLEET if h.name != holder().name]
    if not any(redis_view(h).get("role") == "master" for h in others):
        # The primary is on the holder: the sentinels hand it to a replica (one of the others).
        on(others[0], f"REDISCLI_AUTH=$({with_redis_password('print(p)')}) redis-cli --no-auth-warning "
                      f"--tls --cacert {FLEET_CA} -h {others[0].address} -p 26380 "
                      f"SENTINEL FAILOVER {store.SERVICE_NAME}")
        wait_for(lambda: any(redis_view(h).get("role") == "master" for h in others), 30, "the primary on a replica")
    clean = next(h for h in others if redis_view(h).get("role") != "master")
    clients = 4
    try:
        with steady(ca_file) as stopped:
            machines.stop(clean)
            time.sleep(3)
    finally:
        machines.ensure_host(clean)
        wait_for(all_up, 180, f"{clean.name} back in the fleet after its boot")
    assert stopped.failures == [], f"{clean.name} stopped cleanly: {stopped.summary()}"
    # One host lost at a time (two of three down would also take the rate-limit store's majority).
    killed = next(h for h in others if h is not clean)
    assert redis_view(killed).get("role") == "master"
    # Those the killed one was serving never get an answer (the client gives up after 20 s); the
    # load goes on until they have, and the others have served for a while.
    try:
        with steady(ca_file, clients=clients, timeout=20, after=25) as lost:
            machines.crash(killed)
    finally:
        machines.ensure_host(killed)
        wait_for(all_up, 180, f"{killed.name} back in the fleet after its boot")
    assert len(lost.failures) <= clients, f"{killed.name} killed: {lost.summary()}"
    print(f"killed {killed.name} (the Redis primary): {lost.summary()}")


def test_when_the_holder_stops_cleanly_it_hands_the_address_over_without_a_failed_request(fleet, ca_file):
    """The holder's front finishes its clients' requests while new connections wait in their TCP
    (on_host/handover.py); only then does the address move: no connection is cut, none refused."""
    old = holder()
    others = [h for h in FLEET if h is not old]
    try:
        # The load goes on until the clients have been served through the new holder for a while:
        # it takes over, not only the address. Without pause: the handover takes a fraction of a
        # second, and new connections must arrive within it.
        with steady(ca_file, clients=4, after=5, pause=0) as outcomes:
            stopping = threading.Thread(target=machines.stop, args=(old,))
            started = time.monotonic()
            stopping.start()
            new = wait_for(lambda: holders(others), 15, "another gateway holds the address", interval=0.1)
            moved_after = time.monotonic() - started
            stopping.join()
    finally:
        machines.ensure_host(old)
        wait_for(all_up, 120, f"{old.name} back in the fleet after its boot")
    assert outcomes.failures == [], outcomes.summary()
    assert moved_after < 5, moved_after
    # Its journal (the boot before this one) says how: the connections open ended before the move,
    # and new ones were kept waiting, not refused.
    said = on(old, "journalctl -b -1 -u litellm-front.service -o cat | grep 'handed' | tail -1")
    handed = re.search(r"\(every client connection ended\): 0 connection\(s\) left, ([0-9]+) new connection\(s\) "
                       r"kept waiting", said)
    assert handed and int(handed[1]) > 0, said
    print(f"holder {old.name} stopped: address on {new[0]} after {moved_after:.1f} s; {said.strip()}; "
          f"{outcomes.summary()}")
    assert holders() == new  # no preemption: a gateway coming back does not take the address back


def test_a_roll_stops_at_the_first_gateway_that_fails_and_once_fixed_rolls_on_under_load(fleet, deploy_dir, tmp_path,
                                                                                         ca_file):
    broken = FLEET[1]
    release = on(broken, "readlink -f /opt/litellm/current").strip()
    # The release still checks configs (the deploy validates the new one with it), but no proxy starts.
    changed = {**TLS, "litellm_timeout": 12}
    with release_does_not_start(release, lambda command: on(broken, command)), steady(ca_file) as outcomes:
        result = deploy(deploy_dir, hosts=FLEET, **changed)
    assert result.returncode != 0
    assert outcomes.failures == [], outcomes.summary()
    assert f"roll stopped here: {broken.fqdn} stays drained" in result.output, result.output[-6000:]
    assert f"{FLEET[2].fqdn}: not changed: the roll stopped at {broken.fqdn}" in result.output, result.output[-6000:]
    assert "not drained in the front" not in result.output, result.output[-6000:]  # every front was told
    assert "not put back in the front" not in result.output, result.output[-6000:]
    assert balancer()[broken.name]["status"] == "DRAIN"
    assert "timeout: 12" in on(FLEET[0], "cat /etc/litellm/config.yaml")  # the first had rolled
    back = fab(tmp_path, "undrain", broken.fqdn, hosts=FLEET, **changed)
    assert back.returncode == 0, back.stdout + back.stderr

    with steady(ca_file) as outcomes:
        again = deploy(deploy_dir, hosts=FLEET, **changed)
    assert again.returncode == 0, again.output[-6000:]
    assert outcomes.failures == [], outcomes.summary()
    assert "not drained in the front" not in again.output and "not put back" not in again.output, again.output[-6000:]
    for host in FLEET:
        assert "timeout: 12" in on(host, "cat /etc/litellm/config.yaml")
    wait_for(all_up, 60, "every gateway UP after the roll")


def test_fab_restart_drains_restarts_and_puts_back_a_fleet_gateway_under_load_without_a_failure(fleet, tmp_path,
                                                                                                ca_file):
    """The roll's order and its stop at a failure are fab's own (tests/lab/test_fabfile.py); here a
    fleet gateway is drained from every front around its restart, and put back."""
    target = FLEET[2]
    served = int(balancer()[target.name]["stot"])
    with steady(ca_file) as outcomes:
        result = fab(tmp_path, "restart", "--only", target.fqdn, hosts=FLEET, timeout=900,
                     **{**TLS, "litellm_timeout": 12})
        wait_for(all_up, 30, f"{target.name} UP again after its restart")
        time.sleep(2)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcomes.failures == [], outcomes.summary()
    assert f"{target.fqdn}: restart:" in result.stdout
    assert int(balancer()[target.name]["stot"]) > served  # back in the load balancing, taking requests


def with_redis_password(code: str) -> str:
    """A command running `code` on a gateway with on_host.shared_limits as `s` and the fleet's Redis
    password (read there, never sent here) as `p`."""
    script = (f"import json; from on_host import shared_limits as s; "
              f"p = s.read_variable('/etc/litellm/litellm.env', '{store.PASSWORD_VAR}'); {code}")
    return f"PYTHONPATH=/usr/local/lib/litellm-gateway python3 -c \"{script}\""


def redis_view(host) -> dict:
    """What `fab status` reads on a gateway: its Redis role and its sentinel's primary."""
    return json.loads(on(host, with_redis_password(
        f"print(json.dumps(s.view('{host.address}', 6380, 26380, p, '{FLEET_CA}')))")))


def team_key(tmp_path, team: str, *flags: str) -> str:
    made = fab(tmp_path, "keys.create", "--team", team, *flags, hosts=FLEET, **TLS)
    assert made.returncode == 0, made.stdout + made.stderr
    return re.search(r"sk-[0-9a-f]{64}", made.stdout).group(0)


def rpm_outcomes(key: str, ca_file: str, requests: int = 30) -> list[str]:
    sdk = client(URL, key, ca_file=ca_file)

    def one(_):
        try:
            sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
            return "ok"
        except openai.RateLimitError:
            return "429"

    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(one, range(requests)))


def answers(key: str, ca_file: str) -> dict[str, str]:
    """What each gateway, asked at its own address, says to `key`: "ok" or the HTTP status."""
    said = {}
    for host in FLEET:
        try:
            client(f"https://{host.address}:{GATEWAY_PORT}/v1", key, ca_file=ca_file).models.list()
            said[host.name] = "ok"
        except openai.APIStatusError as error:
            said[host.name] = str(error.status_code)
    return said


def store_lets_in(host, secret_password: str) -> list[bool]:
    """Whether this gateway's Redis and its Sentinel let `secret_password` in (asked on the host)."""
    code = (f"out = []\nfor port in (6380, 26380):\n    try:\n        s.Resp('{host.address}', port, "
            f"'{secret_password}', ca_file='{FLEET_CA}').close(); out.append(True)\n"
            f"    except RuntimeError:\n        out.append(False)\nprint(json.dumps(out))")
    script = f"import json; from on_host import shared_limits as s\n{code}"
    return json.loads(on(host, f"PYTHONPATH={HOST_LIB} python3 -c {shlex.quote(script)}"))


def test_the_master_key_is_rotated_under_load_as_the_recipe_says(fleet, tmp_path, ca_file):
    """docs/recipes.md, run as written on the fleet under steady load: with the previous key set,
    clients still on the old key never fail while the change rolls, and both keys work on every
    gateway; the deploy without it (clients on the new key, never failing) refuses the old key, and
    Redis and Sentinel refuse its password. The lab's key store (FLEET_KEY_FILE) keeps the new key."""
    from gateway.services.store import derived
    from gateway.settings import weak_key_reason
    from tests.lab.test_recipes import commands, run

    make, checks, first, second = commands("Rotate the master key")
    old = control.fleet_key()
    new = subprocess.run(make, shell=True, capture_output=True, text=True, check=True).stdout.strip()
    assert weak_key_reason(new) is None and new != old
    inventory = write_inventory(tmp_path / "inventory.py", FLEET, **TLS)  # its keys: the lab's key files
    said = ""
    try:
        with steady(ca_file) as outcomes:  # clients on the old key
            for path, key in ((control.FLEET_PREVIOUS_KEY_FILE, old), (control.FLEET_KEY_FILE, new)):
                path.touch(mode=0o600)
                path.write_text(key + "\n")
            for command in (checks, first):
                done = run(command, inventory)
                said += done.stdout + done.stderr
                assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        assert outcomes.failures == [], outcomes.summary()
        print(f"rotation, both keys let in (clients on the old key): {outcomes.summary()}")
        assert said.count("switch-over:") >= len(FLEET), said[-3000:]  # the roll reached every gateway
        assert answers(old, ca_file) == answers(new, ca_file) == {h.name: "ok" for h in FLEET}
        assert all(store_lets_in(h, derived(old)) == store_lets_in(h, derived(new)) == [True, True] for h in FLEET)
        with steady(ca_file) as outcomes:  # clients moved to the new key
            control.FLEET_PREVIOUS_KEY_FILE.unlink()
            done = run(second, inventory)
            said += done.stdout + done.stderr
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert outcomes.failures == [], outcomes.summary()
        print(f"rotation, the old key dropped (clients on the new key): {outcomes.summary()}")
    finally:
        control.FLEET_PREVIOUS_KEY_FILE.unlink(missing_ok=True)
    assert answers(old, ca_file) == {h.name: "401" for h in FLEET}
    assert answers(new, ca_file) == {h.name: "ok" for h in FLEET}
    assert all(store_lets_in(h, derived(old)) == [False, False] for h in FLEET)
    assert all(store_lets_in(h, derived(new)) == [True, True] for h in FLEET)
    views = [redis_view(h) for h in FLEET]  # replication and the sentinels on the new password
    assert sorted(v.get("role") for v in views) == ["master", "slave", "slave"], views
    assert all(v.get("sentinels") == len(FLEET) and not v.get("sentinel_error") for v in views), views
    for secret in (old, new, derived(old), derived(new)):  # canaries: in no output, no journal
        assert secret not in said
        for host in FLEET:
            assert secret not in on(host, "journalctl --no-pager -o cat -u litellm-redis -u litellm-sentinel "
                                          "-u 'litellm@*' -u litellm-front -u litellm-fleet")


def test_a_teams_rpm_holds_for_the_fleet_together(fleet, tmp_path, ca_file):
    """rpm 10 through three gateways is 10, not 30: the fleet counts in one Redis."""
    key = team_key(tmp_path, "fleet-rpm", "--rpm", "10")
    before = {name: int(row["stot"]) for name, row in balancer().items()}
    outcomes = rpm_outcomes(key, ca_file)
    after = {name: int(row["stot"]) for name, row in balancer().items()}
    assert outcomes.count("ok") == 10 and outcomes.count("429") == 20, outcomes
    assert all(after[name] > before[name] for name in after), (before, after)  # every gateway got some


def test_a_lost_redis_primary_is_replaced_while_the_fleet_serves_and_fab_status_says_so(fleet, tmp_path, ca_file):
    primary = next(h for h in FLEET if redis_view(h).get("role") == "master")
    others = [h for h in FLEET if h is not primary]
    with steady(ca_file) as outcomes:
        on(primary, "systemctl stop litellm-redis.service")
        promoted = wait_for(lambda: [h for h in others if redis_view(h).get("role") == "master"], 30,
                            "a replica promoted by the sentinels")
        time.sleep(3)
    assert outcomes.failures == [], outcomes.summary()
    assert all(redis_view(h)["primary"] == promoted[0].address for h in others)
    status = fab(tmp_path, "status", hosts=FLEET, **TLS)
    assert status.returncode != 0, status.stdout
    assert f"RATE LIMITS (DEGRADED): Redis primary {promoted[0].address}" in status.stdout, status.stdout
    assert re.search(rf"{primary.fqdn}\s.*\sDOWN\s*$", status.stdout, re.M), status.stdout
    # Limits hold again on the new primary (LiteLLM asked the sentinels for it).
    time.sleep(6)  # LiteLLM's circuit breaker, opened while the primary was gone, tries again after 5 s
    outcomes_after = rpm_outcomes(team_key(tmp_path, "fleet-rpm-after", "--rpm", "10"), ca_file)
    assert outcomes_after.count("ok") == 10, outcomes_after
    on(primary, "systemctl start litellm-redis.service")
    wait_for(lambda: redis_view(primary).get("role") == "slave", 30, f"{primary.name}'s Redis back as a replica")
    # (fab status may still exit non-zero for this module's other tests' settings: the store's line is what counts.)
    wait_for(lambda: "RATE LIMITS (ok)" in fab(tmp_path, "status", hosts=FLEET, **TLS).stdout, 60,
             "fab status: the rate-limit store healthy again", interval=3)


def test_the_primary_moves_off_a_gateway_before_its_maintenance_and_nothing_fails(fleet, tmp_path, ca_file):
    primary = next(h for h in FLEET if redis_view(h).get("role") == "master")
    with steady(ca_file) as outcomes:
        moved = fab(tmp_path, "primary-off", primary.fqdn, hosts=FLEET, **TLS)
        wait_for(lambda: redis_view(primary).get("role") == "slave", 30, f"{primary.name}'s Redis a replica")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert f"(moved off {primary.fqdn})" in moved.stdout, moved.stdout
    assert outcomes.failures == [], outcomes.summary()
    now = [h for h in FLEET if redis_view(h).get("role") == "master"]
    assert len(now) == 1 and now[0] is not primary and all(redis_view(h)["primary"] == now[0].address for h in FLEET)
    again = fab(tmp_path, "primary-off", primary.fqdn, hosts=FLEET, **TLS)
    assert again.returncode == 0 and f"not on {primary.fqdn}: nothing to move" in again.stdout, again.stdout


def test_no_key_or_redis_password_reaches_the_output_or_the_journal(fleet):
    from gateway.services.store import password
    from gateway.settings import load
    from lab.fleet import fleet_data

    secret = password(load(fleet_data(litellm_master_key=control.fleet_key())))
    for text in (fleet.output,):
        assert secret not in text and control.fleet_key() not in text
    for host in FLEET:
        journal = on(host, "journalctl --no-pager -o cat -u litellm-redis -u litellm-sentinel -u 'litellm@*' "
                           "-u litellm-front -u litellm-fleet")
        assert secret not in journal and control.fleet_key() not in journal
        assert on(host, "stat -c '%a %U' /run/litellm-redis/auth.conf "
                        "/var/lib/litellm-sentinel/sentinel.conf").split() \
            == ["600", "litellm", "600", "litellm"]


def test_lab_status_gives_the_fleet_endpoint(fleet, ca_file):
    import json
    import sys

    report = json.loads(subprocess.run([sys.executable, "-m", "lab", "status", "--json"], capture_output=True,
                                       text=True, check=True, cwd=Path(__file__).resolve().parents[2]).stdout)
    assert report["endpoint"]["url"].startswith("https://")
    key = Path(report["endpoint"]["master_key_file"]).read_text().strip()
    sdk = client(report["endpoint"]["url"], key, ca_file=report["endpoint"]["ca_file"])
    assert sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)


def test_the_fleet_benchmark_smoke_run_prints_every_figure(fleet, tmp_path):
    """`python -m bench.fleet --smoke` on this module's fleet: every figure present, no request failed."""
    import sys

    report_file = tmp_path / "fleet.json"
    result = subprocess.run([sys.executable, "-m", "bench.fleet", "--smoke", "--timeout", "12", "--json",
                             str(report_file)], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                            text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(report_file.read_text())["figures"]
    for serving in (1, 2, 3):
        assert figures[f"requests/s through the fleet address, {serving} gateway(s), 8 clients"]["median"] > 0
    for clients in (1, 10):
        assert figures[f"p50 through the fleet address, {clients} client(s)"]["median"] > 0
        assert figures[f"p95 to one gateway's own front, {clients} client(s)"]["median"] > 0
    assert not any(name.startswith("failed requests") for name in figures)  # a real run's: rolls, lost hosts
    assert "req/s, 3 gateways / 1" in result.stdout


def test_the_monitoring_host_watches_the_fleet_over_https(fleet, deploy_dir, tmp_path, monitoring_host):
    """Last (it adds a node exporter to each fleet host): mon1, in the root namespace, scrapes every
    fleet gateway's instances and front over HTTPS (the fleet's CA), each host's node exporter, and
    probes each gateway's and the fleet address' readiness and the fleet's backends."""
    from tests.lab.test_monitoring import FAST, get, probes_succeed
    from tests.lab.test_monitoring import api as api_of
    from tests.lab.test_monitoring import value as value_of

    control.ensure_monitoring()
    # mon1 serves HTTPS too, from the fleet's own CA, behind its login.
    watching = {**FAST, "monitoring_tls": "own-ca"}
    result = deploy(deploy_dir, hosts=FLEET, monitoring=watching, **TLS)
    assert result.returncode == 0, result.output[-6000:]
    prometheus = monitoring_urls(**watching)["prometheus_url"]
    assert prometheus.startswith("https://")
    api = lambda path, **params: api_of(path, prometheus, **params)  # noqa: E731
    value = lambda query: value_of(query, prometheus)  # noqa: E731
    assert get(prometheus + "/-/ready", None).status == 401
    with pytest.raises(urllib.error.URLError):  # plain HTTP gets no page
        urllib.request.urlopen(prometheus.replace("https:", "http:") + "/-/ready", timeout=5).read()
    expected = {"litellm": 2 * len(FLEET), "litellm-front": len(FLEET), "node": len(FLEET) + 1,
                "gateway-readiness": len(FLEET) + 1, "ollama-version": 2,
                "ollama-models": sum(len(b.models) for b in backends_of(FLEET))}

    def healthy():
        targets = api("targets")["activeTargets"]
        jobs: dict[str, int] = {}
        for target in targets:
            jobs[target["labels"]["job"]] = jobs.get(target["labels"]["job"], 0) + 1
        return jobs == expected and all(t["health"] == "up" for t in targets) and probes_succeed(targets, prometheus)

    wait_for(healthy, 90, f"every fleet target up: {expected}", interval=2)
    schemes = {t["scrapeUrl"].split(":")[0] for t in api("targets")["activeTargets"] if t["labels"]["job"] == "litellm"}
    assert schemes == {"https"}
    assert value('probe_ssl_earliest_cert_expiry{gateway="fleet"}') > time.time() + 30 * 86400
    # The operators' commands reach it over HTTPS with the login, verifying its certificate.
    usage = fab(tmp_path, "usage", "--json", hosts=FLEET, monitoring=watching, **TLS)
    assert usage.returncode == 0 and json.loads(usage.stdout)["prometheus"] == prometheus, usage.stdout + usage.stderr


def test_a_gateway_leaving_the_fleet_keeps_no_sentinel_nor_its_firewall_and_serves_on_its_own(fleet, deploy_dir,
                                                                                               ca_file):
    """Last: fleet3 deployed on its own (no fleet address): the fleet's Sentinel stopped and gone (it would
    vote on a primary it no longer shares), the store's firewall table gone, its Redis on the Unix socket;
    it answers on its own address; a second deploy changes nothing."""
    leaving = FLEET[-1]
    alone = {**TLS, "litellm_fleet_address": None, "litellm_fleet_name": None}
    result = deploy(deploy_dir, hosts=[leaving], **alone)
    assert result.returncode == 0, result.output[-6000:]
    assert "No Sentinel nor fleet store firewall is left from a fleet" in result.output
    assert on(leaving, f"systemctl is-active {store.SENTINEL_UNIT}", check=False).strip() != "active"
    assert on(leaving, f"ls /etc/systemd/system/{store.SENTINEL_UNIT} {store.SENTINEL_DIR} 2>&1", check=False) \
        .count("No such file") == 2
    assert store.STORE_TABLE not in on(leaving, "nft list tables")
    assert "PONG" in on(leaving, "redis-cli -s /run/litellm-redis/redis.sock ping")
    sdk = client(f"https://{leaving.address}:{GATEWAY_PORT}/v1", control.fleet_key(), ca_file=ca_file)
    assert sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}]).choices
    again = deploy(deploy_dir, hosts=[leaving], **alone)
    assert again.returncode == 0 and again.changes == 0, again.output[-3000:]
