"""No request lost to a change: config-changing deploys, `fab restart`, upgrades, a broken upgrade
and `fab rollback`, each under steady load from the official OpenAI client, every failure counted."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import pytest

from gateway.lock import release_dir
from gateway.settings import load
from lab import control, machines
from lab.faults import INJECTED, release_does_not_start
from lab.fleet import fleet_data
from lab.load import LongStream, SteadyLoad
from lab.topology import BACKENDS, GATEWAY_PORT
from tests.lab.conftest import TEST_GATEWAY, deploy, service, serving, ssh, wait_for
from tests.lab.test_fabfile import fab

pytestmark = pytest.mark.lab
URL = f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1"
STEADY_MODEL = "llama3-8b"  # on llm1 only
STREAM_MODEL = "mistral-7b"  # on llm2 only, slowed down for the long stream
OLDER = "1.108.6"  # a second real LiteLLM release, with its lock in locks/


@contextmanager
def steady_load(clients: int = 4):
    """Steady completions through the front before, during and after the block."""
    with SteadyLoad(URL, control.master_key(), STEADY_MODEL, clients=clients) as load:
        time.sleep(2)
        yield load.outcomes
        time.sleep(2)
    assert load.outcomes.ok > 50, load.outcomes.summary()  # the load really ran


def release_of(host=TEST_GATEWAY) -> str:
    return ssh("readlink /opt/litellm/current", host).strip().rsplit("/", 1)[-1]


@pytest.fixture
def slow_llm2():
    """llm2 streams 400 words at about 7 per second: a completion of 300 tokens runs for 45 s, longer
    than the new instance takes to start and answer on a busy 2-core machine (at 20 per second, 15 s,
    a CI run once saw the stream end before the drain began)."""
    with machines.double_behaviour(BACKENDS[1], token_delay=0.15, reply=" ".join(f"word{i}" for i in range(400))):
        yield


def start_stream_when_the_new_instance_starts(old: str) -> LongStream:
    """The stream begins once the switch started the other instance: it runs on the old one, which
    must be drained, not cut, when traffic moves."""
    other = "litellm@4002.service" if old == "litellm@4001.service" else "litellm@4001.service"
    # The deploy prepares, stages and checks the config first.
    wait_for(lambda: ssh(f"systemctl is-active {other}", check=False).strip() in ("active", "activating"), 300,
             "the switch-over starts the other instance", interval=0.2)
    stream = LongStream(URL, control.master_key(), STREAM_MODEL, max_tokens=300)
    stream.start()
    assert stream.first_chunk.wait(30) and stream.error is None, stream.error
    return stream


def test_a_config_changing_deploy_under_load_loses_nothing_and_a_long_stream_finishes_whole(
        first_deploy, deploy_dir, slow_llm2):
    old, pid = serving(), service("MainPID")
    started: dict = {}

    def watch() -> None:
        try:
            started["stream"] = start_stream_when_the_new_instance_starts(old)
        except AssertionError as error:
            started["error"] = error

    watcher = threading.Thread(target=watch)
    with steady_load() as outcomes:
        watcher.start()
        result = deploy(deploy_dir, "-vv", litellm_cooldown_time=29)  # -vv prints every command run
        watcher.join(300)
    assert result.returncode == 0, result.output[-4000:]
    assert "stream" in started, started.get("error")
    stream = started["stream"]
    stream.join(120)
    assert "cooldown_time: 29" in ssh("cat /etc/litellm/config.yaml")
    assert f"takes over from {old}" in result.output and serving() != old and service("MainPID") != pid
    assert "daemon-reload" not in result.output  # only the config changed, not a unit
    assert service("NRestarts") == "0"  # the new instance did not crash and come back
    assert outcomes.failures == [], outcomes.summary()
    # The stream ran on the old instance through the switch: every token, ended by its length limit.
    assert (stream.error, stream.chunks, stream.finish_reason) == (None, 300, "length")
    drained = next(line for line in result.output.splitlines() if f"{old} drained in" in line)
    assert "0 request(s)" not in drained, drained  # the drain really waited for it
    same = deploy(deploy_dir, litellm_cooldown_time=29)  # the same settings again: nothing to switch
    assert same.changes == 0, same.output[-3000:]


def test_fab_restart_under_load_loses_nothing(first_deploy, tmp_path):
    old, pid = serving(), service("MainPID")
    with steady_load() as outcomes:
        result = fab(tmp_path, "restart")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{TEST_GATEWAY.fqdn}: restart: fab restart: " in result.stdout and f"{old} drained" in result.stdout
    # Each step as the host said it, before the gateway's summary line.
    steps = result.stdout.index(f"{TEST_GATEWAY.fqdn}: ok   {old} drained")
    assert result.stdout.index(f"{TEST_GATEWAY.fqdn}: restart (1 of 1)") < steps < result.stdout.index(
        f"{TEST_GATEWAY.fqdn}: restart: fab restart: "), result.stdout
    assert outcomes.failures == [], outcomes.summary()
    assert serving() != old and service("MainPID") != pid


def test_a_release_change_and_a_rollback_between_two_real_releases_lose_nothing(first_deploy, deploy_dir, tmp_path):
    newer = release_of()
    assert newer.startswith("litellm-1.108.7-")
    older = release_dir(load(fleet_data(litellm_version=OLDER))).rsplit("/", 1)[1]
    # To the other release, installed beside the serving one while it serves (the lab's settings
    # again too: one switch-over for both).
    with steady_load() as change:
        result = deploy(deploy_dir, litellm_version=OLDER)
    assert result.returncode == 0, result.output[-4000:]
    assert change.failures == [], change.summary()
    assert release_of() == older and "Release /opt/litellm/releases" in result.output
    assert OLDER in ssh("ls /opt/litellm/current/lib/python3*/site-packages | grep '^litellm-'")
    assert f"/opt/litellm/releases/{newer}" in ssh("readlink -e /opt/litellm/slots/*").split()  # kept for rollback
    status = fab(tmp_path, "status")  # the lab's inventory wants the newer one: status says so
    assert status.returncode != 0 and f"{older} (rollback: {newer})" in status.stdout, status.stdout
    # fab rollback goes back to the release that served before, on purpose: here up to 1.108.7.
    with steady_load() as rollback:
        back = fab(tmp_path, "rollback")
    assert back.returncode == 0, back.stdout + back.stderr
    assert rollback.failures == [], rollback.summary()
    assert release_of() == newer
    assert "1.108.7" in ssh("ls /opt/litellm/current/lib/python3*/site-packages | grep '^litellm-'")


def test_a_release_that_does_not_start_is_never_given_traffic(first_deploy, deploy_dir, restore):
    """Fault injection: a release installs but its proxy exits at once. The deploy fails naming it;
    the serving instance never stops serving, and no request fails."""
    other = release_dir(load(fleet_data(litellm_version=OLDER)))  # installed by the test above, or now
    if ssh(f"test -x {other}/bin/litellm && echo yes", check=False).strip() != "yes":
        assert deploy(deploy_dir, litellm_version=OLDER).returncode == 0
        assert deploy(deploy_dir).returncode == 0
    instance, pid = serving(), service("MainPID")
    with release_does_not_start(other, ssh), steady_load() as outcomes:
        result = deploy(deploy_dir, litellm_version=OLDER)
    assert result.returncode != 0
    assert "stopped while starting" in result.output and f"traffic stays on {instance}" in result.output, \
        result.output[-4000:]
    assert INJECTED in result.output  # its journal, shown
    assert outcomes.failures == [], outcomes.summary()
    assert (serving(), service("MainPID")) == (instance, pid)
