"""The deploy into real systemd hosts, checked with the official OpenAI client and over SSH."""
from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import openai
import pytest

from gateway.account import MARKER
from gateway.facts import ANSWER_PATIENCE, ManagedFiles
from gateway.lock import read_lock, release_dir
from gateway.services.host import HOST_LIB
from gateway.services.registry import managed_files
from gateway.settings import load
from lab import machines
from lab.fleet import fleet_data, host_entry
from lab.topology import BACKENDS, MODELS, OLLAMA_PORT, gateway
from on_host.deadline import wait_until
from tests.lab.conftest import DEAD_INDEX, TEST_GATEWAY, deploy, service, serving, ssh, tree_digest, wait_until_ready

pytestmark = pytest.mark.lab
DATA = Path(__file__).resolve().parents[1] / "data"


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)


def test_first_deploy_to_a_fresh_host_proves_the_gateway_works(first_deploy):
    assert first_deploy.changes > 0
    assert "gateway verified" in first_deploy.output
    assert "ok   models: " + ", ".join(sorted(MODELS)) in first_deploy.output
    assert "ok   completion with" in first_deploy.output


def test_a_host_whose_pip_reaches_no_index_is_deployed_from_the_wheels_the_control_machine_sent(first_deploy):
    """gw2's pip.conf names a dead index (tests/lab/conftest.py): its own pip cannot fetch anything."""
    assert DEAD_INDEX in ssh("python3 -m pip config list")
    tried = ssh("python3 -m pip download --no-deps --dest /tmp/pip-try six 2>&1; echo rc=$?", check=False)
    assert "rc=0" not in tried and "127.0.0.1" in tried, tried[-800:]
    sets = ssh("ls /var/cache/litellm-gateway/wheels").split()
    assert len(sets) == 1 and ssh(f"ls /var/cache/litellm-gateway/wheels/{sets[0]} | grep -c '[.]whl$'").strip() != "0"
    # the upload is unpacked, gone
    assert ssh("ls /var/cache/litellm-gateway/wheels/*.tar 2>/dev/null", check=False) == ""
    assert "ok   completion with" in first_deploy.output  # the release installed from them serves


def test_wheels_that_cannot_be_had_stop_the_run_before_any_host_changes(first_deploy, deploy_dir, tmp_path,
                                                                        monkeypatch):
    """A new release whose wheels this machine cannot download (an empty cache, no index reachable):
    refused while preparing, naming the release and the index, before any operation runs."""
    other = release_dir(load(fleet_data(litellm_version="1.108.6")))  # a second real release, locked in locks/
    ssh(f"rm -rf {other}")  # not the serving one: the deploy must want to install it
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", DEAD_INDEX)
    before = tree_digest()
    result = deploy(deploy_dir, litellm_version="1.108.6", litellm_wheel_cache=str(tmp_path / "empty"))
    assert result.returncode != 0
    assert f"the wheels of {other} for {TEST_GATEWAY.fqdn}" in result.output, result.output[-3000:]
    assert "127.0.0.1:9" in result.output  # the index it could not reach
    assert tree_digest() == before and ssh(f"ls -d {other} 2>/dev/null", check=False) == ""


def test_second_deploy_changes_nothing(first_deploy, deploy_dir):
    pid = service("MainPID")
    again = deploy(deploy_dir)
    assert again.returncode == 0, again.output[-3000:]
    assert again.changes == 0, again.output[-3000:]
    assert service("MainPID") == pid


def test_an_instance_restarted_onto_a_hand_edit_is_switched_away_from_once_the_file_is_put_back(first_deploy,
                                                                                                deploy_dir):
    """Whoever starts an instance, its unit records what that start read (ExecStartPre): the hook edited
    by hand and the serving instance restarted onto it, the deploy puts the file back and switches
    over to an instance that read it as deployed. Without that record the deploy found the files on
    disk as its last switch-over had left them and kept the hand-edited code serving."""
    hook = "/etc/litellm/gateway_auth.py"
    edited = serving()
    ssh(f"echo '# edited by hand' >> {hook} && systemctl restart {edited}")
    wait_until_ready()
    result = deploy(deploy_dir)
    assert result.returncode == 0, result.output[-3000:]
    assert f"takes over from {edited}" in result.output and "already serves" not in result.output, result.output[-3000:]
    assert serving() != edited and "edited by hand" not in ssh(f"cat {hook}")
    pid = service("MainPID")
    again = deploy(deploy_dir)
    assert again.returncode == 0 and again.changes == 0, again.output[-3000:]
    assert service("MainPID") == pid


def test_a_worker_busy_longer_than_uvicorns_default_health_check_is_not_killed(first_deploy):
    """uvicorn kills a worker that does not answer its health ping within 5 s by default: on a busy
    host a new worker still starting (or one serving, stalled) is killed and the instance never comes
    up (TIMEOUT_WORKER_HEALTHCHECK in the env file). A worker stopped for 9 s must live on."""
    unit = serving()
    workers = ssh(f"pgrep -P {service('MainPID')}").split()
    assert len(workers) == 2, workers
    ssh(f"kill -STOP {workers[0]}; sleep 9; kill -CONT {workers[0]}", check=False)
    time.sleep(1)
    assert ssh(f"test -d /proc/{workers[0]} && echo alive", check=False).strip() == "alive"
    assert f"Child process [{workers[0]}] died" not in ssh(f"journalctl -u {unit} --since -1min --no-pager")
    wait_until_ready()


def test_a_running_proxy_that_does_not_answer_is_verified_by_the_next_deploy(first_deploy, deploy_dir):
    """systemd calls a starting (after a reboot) or hung proxy running: no restart is due, but the
    deploy must not end without the gateway answering. Frozen here, thawed once the deploy's readiness
    fact has given up on it (ANSWER_PATIENCE), before the verification's own wait ends."""
    pid = service("MainPID")
    # Every process of the unit (parent and workers); `systemctl kill` cannot signal a cgroup in the lab,
    # whose cgroup files also list a 0 for processes outside the host's PID namespace (`kill 0`: ourselves).
    every = (f"$(cg=$(systemctl show -p ControlGroup --value {serving()}); "
             "cat /sys/fs/cgroup$cg/cgroup.procs /sys/fs/cgroup/*$cg/cgroup.procs 2>/dev/null | sort -u | grep -vx 0)")
    ssh(f"kill -STOP {every} && systemd-run --quiet --collect --on-active={ANSWER_PATIENCE + 10} "
        "--timer-property=AccuracySec=100ms "
        f"sh -c 'kill -CONT {every}'")
    try:
        result = deploy(deploy_dir)
    finally:
        ssh(f"kill -CONT {every}")
    assert result.returncode == 0, result.output[-3000:]
    assert result.changes == 1, result.output[-3000:]  # the verification, nothing else
    assert "gateway verified" in result.output and "ok   completion with" in result.output
    assert service("MainPID") == pid  # verified, not restarted


def test_openai_client_lists_exactly_the_configured_models(gateway_url, master_key):
    models = client(gateway_url, master_key).models.list()
    assert sorted(m.id for m in models.data) == sorted(MODELS)


def test_openai_client_chat_completion(gateway_url, master_key):
    answer = client(gateway_url, master_key).chat.completions.create(
        model="phi3-3.8b", messages=[{"role": "user", "content": "Say hello."}], max_tokens=20
    )
    assert answer.choices[0].message.content.startswith("The gateway answered")
    assert answer.usage.completion_tokens > 0


def test_openai_client_streamed_completion(gateway_url, master_key):
    stream = client(gateway_url, master_key).chat.completions.create(
        model="mistral-7b", messages=[{"role": "user", "content": "Stream please."}], stream=True
    )
    pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert len(pieces) > 3  # really streamed: token by token, not one blob
    assert "".join(pieces).startswith("The gateway answered")


def test_wrong_key_is_refused_with_401(gateway_url):
    with pytest.raises(openai.AuthenticationError) as caught:
        client(gateway_url, "sk-" + "0" * 64).models.list()
    assert caught.value.status_code == 401


def test_config_passes_litellm_validate_config_and_the_seed_config_does_not(first_deploy):
    # The seed's file, put on the host through its file system (the lab host's root is a directory here).
    (TEST_GATEWAY.root / "root" / "seed-config.yaml").write_text((DATA / "seed-config.yaml").read_text())
    # With the proxy's PYTHONPATH: the auth hook, which LiteLLM imports to check a config, imports in_proxy/.
    validate = (f"LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONPATH={HOST_LIB} /opt/litellm/current/bin/litellm "
                "--validate_config --config")
    # Both at once (each is a LiteLLM start), each answer with its exit status, ours first.
    ours, seed = ssh(
        f"({validate} /etc/litellm/config.yaml > /root/ours.out 2>&1; echo rc=$? >> /root/ours.out) & "
        f"({validate} /root/seed-config.yaml > /root/seed.out 2>&1; echo rc=$? >> /root/seed.out) & wait; "
        "cat /root/ours.out; echo ====; cat /root/seed.out; rm -f /root/ours.out /root/seed.out"
    ).split("====\n")
    deployments = sum(len(b.models) for b in BACKENDS)  # one entry per (model, backend)
    assert f"config OK ({deployments} models)" in ours and "rc=0" in ours, ours[-2000:]
    assert "rc=1" in seed
    assert "health_check_interval" in seed


def test_service_runs_as_litellm_with_no_capabilities(first_deploy):
    pid = service("MainPID")
    assert ssh(f"ps -o user= -p {pid}").strip() == "litellm"
    status = dict(line.split(":\t", 1) for line in ssh(f"cat /proc/{pid}/status").splitlines() if ":\t" in line)
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[cap], 16) == 0, f"{cap}={status[cap]}"
    assert status["NoNewPrivs"].strip() == "1"
    assert ssh("getent passwd litellm").strip().split(":")[2:] == ["1002", "1002", MARKER, "/var/lib/litellm",
                                                                    "/usr/sbin/nologin"]


def table_for(host=TEST_GATEWAY, **overrides):
    """The managed-files table as the deploy renders it for a lab gateway (2 CPUs, no team keys yet)."""
    return managed_files(load(fleet_data(**overrides) | host_entry(host)[1]).resolved(2), host.fqdn)


def test_every_file_of_the_managed_table_is_on_the_host_as_the_table_says(first_deploy):
    """The deploy installs exactly the table (gateway/services/); the drift check and this test read the same rows."""
    fact = ManagedFiles()
    table = table_for()
    plain = [f for f in table if not f.secret]
    found = fact.process(ssh(fact.command(paths=tuple(f.path for f in plain))).splitlines())
    for f in plain:
        assert found[f.path] == {"user": f.user, "group": f.group, "mode": f.mode, "sha256": f.sha256}, f.path
    for f in (f for f in table if f.secret):
        assert ssh(f"stat -c '%a %U %G' {f.path}").split() == [f.mode, f.user, f.group]
    assert {f.name for f in table} >= {"config.yaml", "gateway_auth.py", "team-keys.json", "smoke.py", "readiness.py",
                                       "status.py", "switch.py", "front.py", "litellm.env", "litellm@.service",
                                       "litellm-redis.service", "litellm-front.service", "litellm-front.cfg"}


def test_files_have_the_right_modes_and_owners(first_deploy):
    expected = {
        "/etc/litellm": "750 root litellm",
        "/etc/litellm/config.yaml": "640 root litellm",
        "/etc/litellm/gateway_auth.py": "640 root litellm",
        "/etc/litellm/logging.json": "640 root litellm",
        "/etc/litellm/litellm.env": "600 root root",
        "/etc/systemd/system/litellm@.service": "644 root root",
        "/etc/systemd/system/litellm-front.service": "644 root root",
        "/etc/haproxy/litellm-front.cfg": "644 root root",
        "/etc/logrotate.d/litellm": "644 root root",
        "/opt/litellm/current/bin/litellm": "755 root root",
        "/var/log/litellm": "750 litellm litellm",
        "/var/lib/litellm": "750 litellm litellm",
    }
    for path, want in expected.items():
        assert ssh(f"stat -c '%a %U %G' {path}").strip() == want, path
    # The service user cannot read the secret nor change its own code or config.
    as_service = "setpriv --reuid=litellm --regid=litellm --init-groups"
    assert "Permission denied" in ssh(f"{as_service} cat /etc/litellm/litellm.env 2>&1; echo rc=$?", check=False)
    assert "model_list:" in ssh(f"{as_service} cat /etc/litellm/config.yaml")  # the same command reads what it may
    assert "Permission denied" in ssh("setpriv --reuid=litellm --regid=litellm --init-groups "
                                      "touch /opt/litellm/x 2>&1", check=False)


def installed_packages(host) -> set[tuple[str, str]]:
    freeze = ssh("/opt/litellm/current/bin/pip freeze", host=host)
    return {(re.sub(r"[-_.]+", "-", name).lower(), version)
            for name, version in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$", freeze, re.M)}


def test_two_gateways_deployed_apart_hold_exactly_the_packages_of_the_lock(first_deploy, readme_gateway):
    """gw1 and gw2 are deployed at different times (gw2 is rebuilt every run): the same packages, all from the lock."""
    lock, problem = read_lock(load(fleet_data()).requirements)
    assert not problem
    locked = {(re.sub(r"[-_.]+", "-", name).lower(), version)
              for name, version in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", lock, re.M)}
    gw2, gw1 = installed_packages(TEST_GATEWAY), installed_packages(readme_gateway)
    assert gw2 == gw1 and len(gw2) > 100
    assert gw2 <= locked, sorted(gw2 - locked)
    assert ssh("cat /opt/litellm/current/requirements.txt") == lock  # what fab status compares


def test_the_installed_releases_packages_meet_each_others_requirements(first_deploy, readme_gateway):
    """Installed with --no-deps from the lock: pip check proves every requirement (extras too, like
    litellm's httpx[http2]) is met by a locked version. The deploy runs the same check before a release
    can serve; this reads it on both gateways."""
    for host in (TEST_GATEWAY, readme_gateway):
        result = ssh("/opt/litellm/current/bin/python -m pip check --disable-pip-version-check 2>&1", host, check=False)
        assert result.strip() == "No broken requirements found.", (host.name, result)


def test_virtualenv_is_byte_compiled_for_the_read_only_service(first_deploy):
    # pip runs with --no-compile and compileall does it on every core: nothing may be left out,
    # because the service cannot write .pyc files into its read-only venv.
    missing = ssh(
        "/opt/litellm/current/bin/python - <<'EOF'\n"
        "import importlib.util, pathlib, sysconfig\n"
        "files = list(pathlib.Path(sysconfig.get_paths()['purelib']).rglob('*.py'))\n"
        "left = [f for f in files if not pathlib.Path(importlib.util.cache_from_source(str(f))).exists()]\n"
        "print(len(files), len(left))\n"
        "EOF"
    ).split()
    assert int(missing[0]) > 5000 and int(missing[1]) <= 20, missing


def test_proxy_log_lands_in_var_log_and_the_journal(gateway_url, master_key):
    marker = f"logcheck-{time.time_ns()}"
    client(gateway_url, master_key).models.list(extra_query={"marker": marker})  # the access log shows the query
    time.sleep(1)
    assert marker in ssh("cat /var/log/litellm/proxy.log")
    assert marker in ssh("journalctl -u 'litellm@*' --no-pager -o cat")


def test_the_fronts_health_checks_leave_no_line_in_the_proxy_log(gateway_url, master_key):
    """The front asks each instance for its readiness every 3 s: answered 200, no access line."""
    before = int(ssh("wc -l < /var/log/litellm/proxy.log"))
    marker = f"quiet-{time.time_ns()}"
    client(gateway_url, master_key).models.list(extra_query={"marker": marker})
    time.sleep(7)  # two rounds of the front's checks at least
    written = ssh(f"tail -n +{before + 1} /var/log/litellm/proxy.log")
    assert marker in written and "/health/readiness" not in written, written[-3000:]


def test_proxy_log_is_rotated_and_the_proxy_writes_on_into_the_new_file(gateway_url, master_key):
    pid = service("MainPID")
    before = f"before-rotation-{time.time_ns()}"
    client(gateway_url, master_key).models.list(extra_query={"marker": before})
    time.sleep(1)
    ssh("logrotate --force /etc/logrotate.d/litellm")  # fails (and so does the test) on any error
    after = f"after-rotation-{time.time_ns()}"
    client(gateway_url, master_key).models.list(extra_query={"marker": after})
    time.sleep(1)
    assert before in ssh("cat /var/log/litellm/proxy.log.1") and after not in ssh("cat /var/log/litellm/proxy.log.1")
    assert after in ssh("cat /var/log/litellm/proxy.log")  # reopened by the proxy itself
    assert ssh("stat -c '%a %U %G' /var/log/litellm/proxy.log").split() == ["600", "litellm", "litellm"]
    assert service("MainPID") == pid  # no restart for it


@pytest.mark.parametrize("unit", ["serving instance", "litellm-front.service"])
def test_installed_units_score_2_or_better_on_the_host(first_deploy, unit):
    unit = serving() if unit == "serving instance" else unit
    result = ssh(f"systemd-analyze security --threshold=20 {unit} 2>&1; echo rc=$?")
    assert "rc=0" in result, result[-1500:]


def test_unsafe_master_key_exit_does_not_loop(first_deploy):
    """LiteLLM refuses a public default key; the unit does not restart it into the same refusal.

    With one worker the proxy exits 3 (RestartPreventExitStatus=3); with several, uvicorn's parent
    stops with status 0 once a worker fails to start (Restart=on-failure). Both paths run at once,
    each on an instance of the unit of its own (ports 4009, 4010, the serving release): the gateway
    keeps serving."""
    paths = {"litellm@4009.service": (1, "3"), "litellm@4010.service": (2, "0")}
    for unit, (workers, _) in paths.items():
        ssh(
            f"mkdir -p /etc/systemd/system/{unit}.d && printf 'LITELLM_MASTER_KEY=sk-1234\\n' > /run/unsafe.env && "
            "exec=$(sed -n 's/^ExecStart=//p' /etc/systemd/system/litellm@.service "
            f"| sed 's#/slots/%i/#/current/#; s/--num_workers [0-9]*/--num_workers {workers}/') && "
            "printf '[Service]\\nEnvironmentFile=/run/unsafe.env\\nExecStart=\\nExecStart=%s\\n' \"$exec\" "
            f"> /etc/systemd/system/{unit}.d/unsafe.conf"
        )
    ssh(f"systemctl daemon-reload && systemctl restart {' '.join(paths)}")

    def show(unit: str, prop: str) -> str:
        return ssh(f"systemctl show -p {prop} --value {unit}").strip()
    try:
        wait_until(lambda: all(show(unit, "ActiveState") in ("failed", "inactive") for unit in paths), 90, 1)
        time.sleep(8)  # longer than RestartSec=5: a loop would have restarted by now
        for unit, (workers, status) in paths.items():
            assert f"--num_workers {workers} " in show(unit, "ExecStart")
            assert show(unit, "ActiveState") in ("failed", "inactive"), unit
            assert (show(unit, "ExecMainStatus"), show(unit, "NRestarts")) == (status, "0"), unit
            assert "UnsafeMasterKeyError" in ssh(f"journalctl -u {unit} -n 200 --no-pager -o cat"), unit
    finally:
        ssh(f"systemctl stop {' '.join(paths)}; rm -rf {' '.join(f'/etc/systemd/system/{u}.d' for u in paths)} "
            f"/run/unsafe.env && systemctl daemon-reload && systemctl reset-failed {' '.join(paths)}", check=False)


def test_bad_setting_is_refused_before_any_host_changes(first_deploy, deploy_dir):
    before = tree_digest()
    refused = deploy(deploy_dir, litellm_routing_strategy="round-robin", litellm_timeout=44)
    assert refused.returncode != 0
    assert "litellm_routing_strategy: 'round-robin' is not one of" in refused.output
    assert "Nothing was changed on any host" in refused.output
    assert tree_digest() == before


def test_dead_host_stops_the_run_before_any_host_changes(first_deploy, deploy_dir):
    before = tree_digest()
    dead = gateway(29)  # never built: nothing listens on its address
    result = deploy(deploy_dir, hosts=[TEST_GATEWAY, dead], litellm_timeout=44)
    assert result.returncode != 0
    assert dead.fqdn in result.output and "Could not connect" in result.output
    assert tree_digest() == before


def test_an_existing_account_that_is_not_the_deploys_is_left_exactly_as_it_was(first_deploy, deploy_dir):
    """An operator's login named in the inventory: the deploy stops before any change, on any host."""
    ssh("useradd --create-home --uid 1500 --shell /bin/bash --comment 'Web operator' webops")
    try:
        before = (ssh("getent passwd webops; getent group webops; sha256sum /etc/passwd /etc/group /etc/shadow"),
                  tree_digest())
        result = deploy(deploy_dir, litellm_user="webops", litellm_group="webops", litellm_uid=1003, litellm_gid=1003)
        after = (ssh("getent passwd webops; getent group webops; sha256sum /etc/passwd /etc/group /etc/shadow"),
                 tree_digest())
    finally:
        ssh("userdel --remove webops")
    assert result.returncode != 0
    assert "user webops already exists (uid 1500" in result.output and "will not be taken over" in result.output
    assert "group webops already exists with gid 1500, not 1003" in result.output
    assert "Nothing was changed on any host" in result.output
    assert after == before
    assert "webops:x:1500:1500:Web operator:/home/webops:/bin/bash" in after[0]


def test_a_changed_service_account_is_put_back(first_deploy, deploy_dir):
    ssh("usermod -s /bin/bash litellm")
    result = deploy(deploy_dir)
    assert result.returncode == 0, result.output[-3000:]
    assert result.changes == 1
    assert ssh("getent passwd litellm").strip().endswith(":/var/lib/litellm:/usr/sbin/nologin")


def test_unit_change_reloads_systemd_and_restarts(first_deploy, deploy_dir, restore):
    before = service("MainPID")
    changed = deploy(deploy_dir, "-vv", litellm_workers=1)  # "auto" gives 2 on the lab's 2-CPU hosts
    assert changed.returncode == 0, changed.output[-3000:]
    assert "daemon-reload" in changed.output
    assert "--num_workers 1 " in service("ExecStart")
    assert service("MainPID") != before


def test_a_failing_backend_is_failed_over_to_the_other(gateway_url, master_key):
    """phi3-3.8b is on both backends: with llm1 failing every call, clients still get answers."""
    llm1 = BACKENDS[0]
    double = f"http://{llm1.address}:{OLLAMA_PORT}/_double"
    with machines.double_behaviour(llm1, fail=True):
        urllib.request.urlopen(urllib.request.Request(f"{double}/reset", data=b"{}"))
        answers = [
            client(gateway_url, master_key).chat.completions.create(
                model="phi3-3.8b", messages=[{"role": "user", "content": "hi"}]
            ).choices[0].message.content
            for _ in range(8)
        ]
        tried = json.loads(urllib.request.urlopen(f"{double}/stats").read())["requests"].get("POST /api/chat", 0)
    assert all(answers)
    assert tried > 0  # llm1 really was tried and failed: the answers came by failover


def test_an_auth_hook_litellm_refuses_never_replaces_the_one_in_place(first_deploy, deploy_dir):
    """Fault injection: the venv's Python refuses the hook check; the live hook stays, the service keeps serving."""
    ssh("echo '# edited on the host' >> /etc/litellm/gateway_auth.py")  # so the deploy wants to replace it
    before = ssh("sha256sum /etc/litellm/gateway_auth.py")
    pid = service("MainPID")
    ssh(
        "mv /opt/litellm/current/bin/python /opt/litellm/current/bin/python.real && "
        "printf '#!/bin/sh\\ncase \"$*\" in *SourceFileLoader*) echo \"LiteLLM: auth hook refused: injected\"; "
        "exit 1;; esac\\nexec /opt/litellm/current/bin/python.real \"$@\"\\n' > /opt/litellm/current/bin/python && "
        "chmod 755 /opt/litellm/current/bin/python"
    )
    try:
        result = deploy(deploy_dir)
    finally:
        ssh("mv -f /opt/litellm/current/bin/python.real /opt/litellm/current/bin/python")
    assert result.returncode != 0
    assert "auth hook refused: injected" in result.output
    assert ssh("sha256sum /etc/litellm/gateway_auth.py") == before
    assert ssh("ls /etc/litellm/gateway_auth.py.staged 2>/dev/null", check=False) == ""  # the refused copy is gone
    assert service("MainPID") == pid
    fixed = deploy(deploy_dir)  # the real check accepts the real hook
    assert fixed.returncode == 0 and "edited on the host" not in ssh("cat /etc/litellm/gateway_auth.py")


def test_a_config_litellm_refuses_never_replaces_the_one_in_place(first_deploy, deploy_dir):
    """Fault injection: the installed LiteLLM refuses every config; the deploy must leave the old one,
    and every other service's files (the timeout is in the front's config too)."""
    before = ssh("sha256sum /etc/litellm/config.yaml /etc/haproxy/litellm-front.cfg")
    pid = service("MainPID")
    ssh(
        "mv /opt/litellm/current/bin/litellm /opt/litellm/current/bin/litellm.real && "
        "printf '#!/bin/sh\\ncase \"$*\" in *--validate_config*) echo \"LiteLLM: config validation failed: injected\"; "
        "exit 1;; esac\\nexec /opt/litellm/current/bin/litellm.real \"$@\"\\n' > /opt/litellm/current/bin/litellm && "
        "chmod 755 /opt/litellm/current/bin/litellm"
    )
    try:
        result = deploy(deploy_dir, litellm_timeout=47)
    finally:
        ssh("mv -f /opt/litellm/current/bin/litellm.real /opt/litellm/current/bin/litellm "
            "&& rm -f /etc/litellm/config.yaml.staged")
    assert result.returncode != 0
    assert "config validation failed: injected" in result.output
    assert ssh("sha256sum /etc/litellm/config.yaml /etc/haproxy/litellm-front.cfg") == before
    assert service("MainPID") == pid
