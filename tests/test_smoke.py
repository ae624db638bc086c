"""The smoke check through the front waits out the front's 503 while it re-marks an instance, within its deadline."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from on_host import smoke


class Front(BaseHTTPRequestHandler):
    """Answers ready, and 503 (HAProxy's "no server available") to the first `unavailable` model lists."""
    unavailable = 0
    model_lists = 0

    def do_GET(self) -> None:
        if self.path == "/health/readiness":
            self._answer(200, {"status": "healthy"})
        elif self.path == "/v1/models":
            type(self).model_lists += 1
            if type(self).model_lists <= type(self).unavailable:
                self._answer(503, "<html><body><h1>503 Service Unavailable</h1></body></html>")
            else:
                self._answer(200, {"data": [{"id": "phi3-3.8b"}, {"id": "llama3-8b"}]})

    def _answer(self, status: int, body: object) -> None:
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def front() -> Iterator[str]:
    Front.model_lists = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_503_right_after_readiness_is_waited_out(front: str) -> None:
    Front.unavailable = 2
    assert smoke.ready_with_models(front, "key", ["llama3-8b", "phi3-3.8b"], timeout=10) == ["llama3-8b", "phi3-3.8b"]
    assert Front.model_lists == 3


def test_a_503_that_lasts_fails_at_the_deadline_naming_it(front: str) -> None:
    Front.unavailable = 1000
    with pytest.raises(smoke.Unavailable, match="HTTP 503"):
        smoke.ready_with_models(front, "key", [], timeout=2)
    assert 2 <= Front.model_lists <= 4


def test_other_answers_fail_at_once(front: str) -> None:
    Front.unavailable = 0
    with pytest.raises(smoke.CheckFailed, match="missing"):
        smoke.ready_with_models(front, "key", ["phi3-3.8b", "mistral-7b"], timeout=10)
    assert Front.model_lists == 1


def test_the_deploys_smoke_check_completes_with_a_chat_model_else_embeds() -> None:
    from gateway.commands import smoke_command
    from gateway.settings import load
    from tests.test_settings import GOOD_KEY, seed_data

    def smoke(models: dict) -> str:
        s = load(seed_data(litellm_master_key=GOOD_KEY, litellm_models=models, litellm_backends={
            "llm1": {"address": "llm1.example.org", "models": list(models)}}))
        return smoke_command(s, s.local_url, 10)

    embed = {"tag": "nomic-embed-text", "mode": "embedding"}
    assert "--model phi3 --expect nomic phi3" in smoke({"nomic": embed, "phi3": {"tag": "phi3:3.8b"}})
    assert "--embedding-model nomic --expect nomic" in smoke({"nomic": embed})
