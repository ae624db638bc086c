"""The gateway's edge probed from outside, as a security review would: without a key and with a team key.

Every path that is not a client route is refused by the front (HAProxy's own 404 page: no instance
read it), however it is spelled; a team key cannot lift its answer length with Ollama's own fields
or with values Ollama reads as "no limit". What the backend was asked is read from the Ollama
double's record of each call (/_double/stats).
"""
from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from bench.measure import MemorySampler
from gateway.services.front import CLIENT_ROUTES
from gateway.services.host import HOST_LIB
from gateway.settings import load
from lab import control
from lab.fleet import fleet_data
from lab.load import SteadyLoad
from lab.topology import GATEWAY_PORT
from tests.lab.conftest import TEST_GATEWAY, serving, ssh
from tests.lab.test_context_window import WINDOW, calls, reset_doubles
from tests.lab.test_fabfile import fab

pytestmark = pytest.mark.lab
TEAM = "edge-review"
LIMIT = 64
FRONT_404 = b"The resource could not be found."  # HAProxy's page; LiteLLM's own 404 is JSON
# Internals, and the client routes spelled another way: percent-encoding, case, "//", dot segments.
REFUSED = [
    ("GET", "/metrics"), ("GET", "/metrics/"), ("GET", "/%6detrics/"), ("GET", "/%6Detrics/"),
    ("GET", "/METRICS"), ("GET", "//metrics"), ("GET", "/v1/../metrics"), ("GET", "/./metrics/"),
    ("GET", "/%2e%2e/metrics"), ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc"),
    ("GET", "/sso/key/generate"), ("POST", "/login"), ("POST", "/v2/login"), ("GET", "/ui/"),
    ("POST", "/key/generate"), ("GET", "/key/info"), ("GET", "/team/list"), ("GET", "/model/info"),
    ("GET", "/config/yaml"), ("GET", "/routes"), ("GET", "/health"), ("GET", "/spend/logs"),
    ("POST", "/v1/chat%2fcompletions"), ("POST", "/V1/chat/completions"), ("POST", "/v1//chat/completions"),
    ("POST", "/v1/chat/completions/"), ("POST", "/v1/./chat/completions"), ("GET", "/mcp/"),
]


def request(address: str, method: str, path: str, key: str | None = None, body: bytes | None = None,
            port: int = GATEWAY_PORT, ca_file: str | None = None) -> tuple[int, bytes]:
    """One request with the path exactly as given (http.client sends it unnormalised)."""
    if ca_file:
        conn = http.client.HTTPSConnection(address, port, timeout=30,
                                           context=ssl.create_default_context(cafile=ca_file))
    else:
        conn = http.client.HTTPConnection(address, port, timeout=30)
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        conn.request(method, path, body=body if body is not None else (b"{}" if method == "POST" else None),
                     headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def refused_by_the_front(address: str, key: str | None, **tls) -> dict[str, tuple[int, bytes]]:
    """Each REFUSED probe the front did not answer with its own 404, with what came back instead."""
    let_through = {}
    for method, path in REFUSED:
        status, body = request(address, method, path, key, **tls)
        if status != 404 or FRONT_404 not in body:
            let_through[f"{method} {path}"] = (status, body[:120])
    return let_through


def clients_routes_answer(address: str, key: str, **tls) -> None:
    """The routes clients need still reach the proxy: the health checks without a key, models with one."""
    assert request(address, "GET", "/health/liveliness", **tls)[0] == 200
    assert request(address, "GET", "/health/readiness", **tls)[0] == 200
    status, body = request(address, "GET", "/v1/models", key, **tls)
    assert status == 200 and json.loads(body)["data"], body[:300]


@pytest.fixture(scope="module")
def team_key(first_deploy, tmp_path_factory) -> str:
    """A team key limited to LIMIT tokens per request, on the lab's own keys file (revoked afterwards)."""
    tmp = tmp_path_factory.mktemp("edge")
    fab(tmp, "keys.revoke", "--team", TEAM)  # an earlier run's key, if any (the lab's keys file persists)
    made = fab(tmp, "keys.create", "--team", TEAM, "--max-tokens", str(LIMIT), "--rpm", "1000")
    assert made.returncode == 0, made.stdout + made.stderr
    yield re.search(r"sk-[0-9a-f]{64}", made.stdout).group(0)
    fab(tmp, "keys.revoke", "--team", TEAM)


def test_only_the_client_routes_reach_the_proxy_without_a_key(first_deploy):
    assert refused_by_the_front(TEST_GATEWAY.address, None) == {}
    assert request(TEST_GATEWAY.address, "GET", "/health/readiness")[0] == 200
    assert set(CLIENT_ROUTES) >= {"/v1/chat/completions", "/v1/models", "/health/readiness"}


def test_only_the_client_routes_reach_the_proxy_with_a_team_key(team_key):
    assert refused_by_the_front(TEST_GATEWAY.address, team_key) == {}
    clients_routes_answer(TEST_GATEWAY.address, team_key)


def completion(key: str, body: dict) -> tuple[int, dict]:
    status, answer = request(TEST_GATEWAY.address, "POST", "/v1/chat/completions", key, json.dumps(
        {"model": "phi3-3.8b", "messages": [{"role": "user", "content": "hi"}], **body}).encode())
    return status, json.loads(answer)


@pytest.mark.parametrize("fields", [
    {"max_tokens": -1}, {"max_tokens": 0}, {"max_tokens": LIMIT + 1}, {"max_tokens": 32.5},
    {"max_completion_tokens": 1000000.0}, {"max_completion_tokens": -2}, {"max_tokens": True},
    {"max_tokens": "64"},
])
def test_a_team_key_asking_for_no_limit_or_more_than_its_own_is_refused_naming_the_limit(team_key, fields):
    reset_doubles()
    status, answer = completion(team_key, fields)
    assert status == 400, answer
    assert f"limit of {LIMIT} tokens" in json.dumps(answer), answer
    assert calls() == []  # refused before any backend was asked


@pytest.mark.parametrize("fields", [
    {"max_tokens": 32, "num_predict": 99999},
    {"num_predict": -1},
    {"max_tokens": 32, "options": {"num_predict": 99999, "num_ctx": 131072}},
    {"max_tokens": 32, "keep_alive": 0},
    {"max_tokens": 32, "num_ctx": 131072, "num_keep": 99999, "use_mlock": True, "num_gpu": 0},
])
def test_ollamas_own_fields_never_reach_a_backend_from_a_team_key(team_key, fields):
    reset_doubles()
    status, answer = completion(team_key, fields)
    assert status == 200, answer
    [call] = calls()
    asked = fields.get("max_tokens", LIMIT)
    assert call["num_predict"] == asked, call  # the key's limit (or less), never what the fields said
    assert call["keep_alive"] != 0 and "options" not in call["options"], call
    sent = set(fields) - {"max_tokens"}
    assert not sent & set(call["options"]) - {"num_predict", "num_ctx"}, call
    assert call["num_ctx"] != 131072, call


def test_with_both_answer_fields_the_window_must_hold_the_longer(first_deploy):
    """LiteLLM sends Ollama one of max_tokens / max_completion_tokens: the context check takes the
    longer, so a short one beside it cannot carry a request past the window."""
    reset_doubles()
    status, answer = completion(control.master_key(), {"max_tokens": 1, "max_completion_tokens": 2 * WINDOW})
    assert status == 400 and "context_length_exceeded" in json.dumps(answer), answer
    assert calls() == []


def test_the_official_client_works_within_the_keys_limit(team_key):
    sdk = openai.OpenAI(base_url=f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1", api_key=team_key, max_retries=0)
    answer = sdk.chat.completions.create(model="phi3-3.8b", messages=[{"role": "user", "content": "hi"}],
                                         max_tokens=LIMIT)
    assert answer.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="phi3-3.8b", messages=[{"role": "user", "content": "hi"}], max_tokens=-1)
    assert f"limit of {LIMIT} tokens" in str(refused.value)


def raw(source: str, head: bytes, address: str = TEST_GATEWAY.address, timeout: float = 20) -> socket.socket:
    """A connection from `source` (a loopback address of this machine: another client) with `head` sent."""
    conn = socket.create_connection((address, GATEWAY_PORT), timeout=timeout, source_address=(source, 0))
    conn.sendall(head)
    return conn


def answer_of(conn: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(OSError):
        while chunk := conn.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                break
    conn.close()
    return data


def head(path: str = "/v1/chat/completions", **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {TEST_GATEWAY.address}", "Content-Type: application/json",
             *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_body_over_the_limit_is_refused_before_an_instance_reads_a_byte(first_deploy):
    started = time.monotonic()
    conn = raw("127.0.20.1", head(Content_Length=str(64 << 20)) + b'{"model": "phi3-3.8b", "messages": [')
    assert answer_of(conn).startswith(b"HTTP/1.1 413"), "a 64 MiB body was not refused by its length"
    assert time.monotonic() - started < 5  # at the headers, not after reading 64 MiB
    chunked = answer_of(raw("127.0.20.1", head(Transfer_Encoding="chunked") + b"5\r\n{\"a\":\r\n"))
    assert chunked.startswith(b"HTTP/1.1 411"), chunked[:200]


def test_a_slow_sender_is_cut_off_at_the_request_timeout(first_deploy):
    conn = raw("127.0.20.2", b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n", timeout=30)
    started = time.monotonic()
    answered = answer_of(conn)
    assert answered.startswith(b"HTTP/1.1 408") or answered == b"", answered[:200]
    assert 8 < time.monotonic() - started < 15  # timeout http-request 10s, not the 120-s client timeout


def test_one_source_holds_at_most_its_connections_and_its_request_rate(first_deploy, team_key):
    s = load(fleet_data())
    flood, refused = [], 0
    for _ in range(s.client_max_connections + 40):
        try:
            flood.append(socket.create_connection((TEST_GATEWAY.address, GATEWAY_PORT), timeout=5,
                                                  source_address=("127.0.20.3", 0)))
        except ConnectionResetError:
            refused += 1  # the front accepted and reset it before connect() returned
    time.sleep(1)
    for conn in flood:
        conn.setblocking(False)
        try:
            refused += conn.recv(1) == b""  # closed by the front at once
        except BlockingIOError:
            pass  # still open: waiting for a request
        except OSError:
            refused += 1  # reset
        conn.close()
    assert refused == 40, f"{refused} of {s.client_max_connections + 40} connections from one source were refused"
    # Requests: the front's own 404s are fast enough to pass the rate within its 10-s window.
    statuses = []
    conn = http.client.HTTPConnection(TEST_GATEWAY.address, GATEWAY_PORT, timeout=10, source_address=("127.0.20.4", 0))
    for _ in range(s.client_max_rate * 10 + 50):
        conn.request("GET", "/nothing-here")
        answer = conn.getresponse()
        answer.read()
        statuses.append(answer.status)
        if answer.will_close:
            conn.close()
    assert statuses.count(429) >= 40 and set(statuses) == {404, 429}, {c: statuses.count(c) for c in set(statuses)}
    assert completion(team_key, {"max_tokens": 8})[0] == 200  # another source is not held up


COUNT_WITH_IMAGE = '''
import json, sys
sys.path.insert(0, "/etc/litellm")
import litellm
from litellm.litellm_core_utils import token_counter
fetched = []
token_counter.get_image_dimensions = lambda data: (fetched.append(data), (1024, 1024))[1]
import gateway_auth
messages = [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url",
             "image_url": {"url": "https://images.example/cat.png", "detail": "high"}}]}]
litellm.token_counter(messages=json.loads(json.dumps(messages)))  # as the router's context check counts
before = len(fetched)
gateway_auth.no_image_fetches(messages)  # what the pre-call hook does first
litellm.token_counter(messages=messages)
print(json.dumps({"as_sent": before, "after_the_hook": len(fetched) - before}))
'''


def test_counting_a_prompts_tokens_never_fetches_an_image_the_client_named(first_deploy):
    """In the pinned release, a token count downloads an image with detail "high" to size it; the hook
    drops `detail` (Ollama ignores it) before any count. Run with the installed release and hook."""
    counted = json.loads(ssh(f"PYTHONPATH={HOST_LIB} /opt/litellm/current/bin/python "
                             f"- <<'EOF'\n{COUNT_WITH_IMAGE}\nEOF")
                         .strip().splitlines()[-1])
    assert counted == {"as_sent": 1, "after_the_hook": 0}, counted


def gateway_memory() -> int:
    """Resident bytes of the gateway's processes (the instances, their workers, the front), as the
    benchmark samples them (the lab's containers have no cgroup memory accounting)."""
    return int(ssh(MemorySampler.COMMAND).strip()) * 1024


def big_body(_: int) -> bytes:
    """A 64 MiB body from one more source, pushed as fast as the front takes it: what came back."""
    conn = raw("127.0.20.6", head(Content_Length=str(64 << 20)))
    chunk = b" " * (1 << 20)
    with contextlib.suppress(OSError):
        for _ in range(64):
            conn.sendall(chunk)
    return answer_of(conn)[:12]


def is_open(conn: socket.socket) -> bool:
    """Whether the front still holds the connection (no end of stream yet); closes it."""
    conn.setblocking(False)
    try:
        while conn.recv(65536):  # a 408 page, then the end
            pass
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False  # reset
    finally:
        conn.close()


def test_a_flood_from_other_sources_costs_ordinary_clients_nothing(first_deploy):
    """500 idle connections from one source and 20 concurrent 64 MiB bodies from another, while 4
    clients send completions: every completion succeeds, every body is refused at its headers, and
    the gateway's memory does not grow with the flood."""
    before = gateway_memory()
    with SteadyLoad(f"http://{TEST_GATEWAY.address}:{GATEWAY_PORT}/v1", control.master_key(), "phi3-3.8b",
                    clients=4) as load:
        time.sleep(2)
        idle = []
        for _ in range(500):
            with contextlib.suppress(OSError):  # refused at once past the source's connections
                idle.append(socket.create_connection((TEST_GATEWAY.address, GATEWAY_PORT), timeout=5,
                                                     source_address=("127.0.20.5", 0)))
        with ThreadPoolExecutor(20) as pool:
            bodies = list(pool.map(big_body, range(20)))
        peak = gateway_memory()
        time.sleep(12)  # past the request timeout: the idle connections are cut by the front
        still_open = sum(is_open(conn) for conn in idle)
    print(f"\ngateway's memory: {before / 2**20:.0f} MiB before, {peak / 2**20:.0f} MiB during the flood; "
          f"{load.outcomes.summary()}")
    assert load.outcomes.failures == [] and load.outcomes.ok >= 20, load.outcomes.summary()
    assert bodies == [b"HTTP/1.1 413"] * 20, bodies
    assert still_open == 0
    assert peak - before < 256 << 20, (before, peak)  # nothing of the flood reached an instance


def test_a_loop_of_refused_keys_costs_a_line_per_worker_and_interval_not_a_line_per_key(first_deploy):
    since = ssh("date +%s").strip()
    workers = load(fleet_data()).resolved(int(ssh("nproc"))).workers
    for attempt in range(200):
        assert request(TEST_GATEWAY.address, "GET", "/v1/models", f"sk-wrong-{attempt:04d}")[0] == 401
    time.sleep(2)  # the journal catches up
    journal = ssh(f"journalctl --no-pager -o cat --since @{since} -u 'litellm@*'")
    refused = [line for line in journal.splitlines() if "API key refused" in line or "user_api_key_auth" in line]
    denied = [line for line in journal.splitlines() if '/v1/models HTTP/1.1" 401' in line]
    assert 1 <= len(refused) <= workers and 1 <= len(denied) <= workers, (len(refused), len(denied), journal[-2000:])
    assert "Traceback" not in journal and "sk-wrong" not in journal


def test_refused_keys_and_unknown_models_are_counted_under_bounded_labels(team_key):
    """A refused key is one increment of LiteLLM's failed-requests counter (status 401), and a model name a
    client makes up never becomes a label: the labels name configured models, or "other"."""
    from tests.lab.test_metrics import scrape, total
    port = int(serving().split("@")[1].split(".")[0])
    metric = "litellm_proxy_failed_requests_metric_total"
    before = total(scrape(port), metric, exception_status="401")
    for attempt in range(7):
        assert request(TEST_GATEWAY.address, "GET", "/v1/models", f"sk-refused-{attempt}")[0] == 401
    made_up = [f"made-up-{attempt}-{time.monotonic_ns()}" for attempt in range(5)]
    for model in made_up:
        status, _ = request(TEST_GATEWAY.address, "POST", "/v1/chat/completions", team_key, json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode())
        assert status in (400, 401, 404), status
        status, _ = request(TEST_GATEWAY.address, "POST", "/v1/chat/completions", f"sk-refused-{model}", json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode())
        assert status == 401
    assert completion(team_key, {"max_tokens": 8})[0] == 200
    body = scrape(port)
    assert total(body, metric, exception_status="401") - before == 7 + len(made_up), body[-2000:]
    assert "made-up" not in body and "sk-refused" not in body
    requested = set(re.findall(r'requested_model="([^"]*)"', body))
    assert requested and requested <= {m.name for m in load(fleet_data()).models} | {"other", ""}, requested
