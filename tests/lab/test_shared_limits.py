"""One proxy worker per CPU, their rate-limit counters in a Redis of the gateway's own, on a Unix socket only."""
from __future__ import annotations

import pytest

from tests.lab.conftest import service, ssh

pytestmark = pytest.mark.lab


def test_one_worker_per_cpu_forked_and_a_redis_reachable_by_the_service_user_only(first_deploy):
    cpus = int(ssh("getconf _NPROCESSORS_ONLN"))
    assert f"--num_workers {min(cpus, 8)} " in service("ExecStart")
    # The workers are forked from the parent, LiteLLM imported once (in_proxy/serve.py): each has the
    # parent's command line, where a spawned one would run multiprocessing's spawn_main; and the
    # instance runs from the release's real directory, not through the slot's link.
    parent = service("MainPID")
    lines = ssh(f"for p in {parent} $(cat /proc/{parent}/task/*/children); "
                "do tr '\\0' ' ' < /proc/$p/cmdline; echo; done")
    own, *workers = [line.strip() for line in lines.strip().splitlines()]
    assert len(workers) == min(cpus, 8) and all(w == own for w in workers), lines
    assert own.startswith("/opt/litellm/releases/") and "/in_proxy/serve.py --config " in own, own
    # uvicorn parses HTTP with httptools (in the lock), not h11 in Python: each worker has it loaded.
    for worker in ssh(f"cat /proc/{parent}/task/*/children").split():
        assert "httptools/parser/parser" in ssh(f"cat /proc/{worker}/maps"), worker
    # A fork copies only the forking thread: the parent runs no other, and its workers die with it.
    assert ssh(f"ls /proc/{parent}/task").split() == [parent], ssh(f"grep . /proc/{parent}/task/*/comm")
    assert ssh("systemctl is-active litellm-redis.service").strip() == "active"
    assert ssh("stat -c '%a %U %G %F' /run/litellm-redis/redis.sock").strip() == "700 litellm litellm socket"
    assert "PONG" in ssh("setpriv --reuid=litellm --regid=litellm --clear-groups "
                         "redis-cli -s /run/litellm-redis/redis.sock ping")
    # Nobody else gets in, and no Redis listens on TCP: Debian's own instance was masked before install.
    refused = ssh("setpriv --reuid=nobody --regid=nogroup --clear-groups "
                  "redis-cli -s /run/litellm-redis/redis.sock ping 2>&1", check=False)
    assert "PONG" not in refused and "Permission denied" in refused, refused
    listening = ssh("ss -ltnpH")
    assert "sshd" in listening and "redis" not in listening and ":6379" not in listening
    assert ssh("systemctl is-enabled redis-server.service", check=False).strip() == "masked"


def test_the_proxy_keeps_its_counters_in_that_redis(first_deploy, gateway_url, master_key):
    import openai

    openai.OpenAI(base_url=gateway_url, api_key=master_key, max_retries=0).chat.completions.create(
        model="phi3-3.8b", messages=[{"role": "user", "content": "hi"}])
    keys = ssh("redis-cli -s /run/litellm-redis/redis.sock --scan")
    assert "{api_key:" in keys, keys  # the rate-limit counters, shared by the workers
    # Least-busy counts each worker's requests in flight in its own memory (in_proxy/release_fixes.py).
    assert "_request_count:" not in keys, keys
