"""The gateway's metrics: what the front serves on the metrics port, and the scrape token.

Each proxy instance runs LiteLLM's Prometheus callback; with several workers LiteLLM gathers every
worker's samples for one scrape itself (PROMETHEUS_MULTIPROC_DIR, in the instance's private /tmp).
The front serves each instance's metrics at a path of its own (an instance's counters start at 0
with it, which Prometheus takes as a counter reset; a slot with no instance running answers an
empty scrape) and its own at FRONT_PATH, only to a request carrying the scrape token. The token is
made once on the control machine (0600) and given to Prometheus; a gateway holds only the SHA-256
of its Authorization header, in TOKEN_MAP, which the front reads at every (re)load.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from gateway import control_secrets
from gateway.services import front
from gateway.services.base import ManagedFile, Retired, Rows
from gateway.settings import Settings

TOKEN_MAP = "/etc/haproxy/litellm-metrics.map"
FRONT_PATH = "/metrics/front"
# Labels LiteLLM would put on its metrics that name a key, a person or a client: never exported
# (a key's hash identifies the key as well as the key does in a log).
EXCLUDED_LABELS = ("hashed_api_key", "api_key_alias", "user", "user_email", "user_alias", "end_user", "client_ip",
                   "user_agent")

# The series LiteLLM writes (its names without _total/_bucket): requests, failures (with their status,
# 429s included), latency through the gateway and of the backend call, tokens, per deployment, and the
# deployments' state. Budgets, spend, caches and the like are left out.
KEPT_METRICS = ("litellm_proxy_total_requests_metric", "litellm_proxy_failed_requests_metric",
                "litellm_request_total_latency_metric", "litellm_llm_api_latency_metric",
                "litellm_input_tokens_metric", "litellm_output_tokens_metric",
                "litellm_deployment_success_responses", "litellm_deployment_failure_responses",
                "litellm_deployment_total_requests", "litellm_deployment_state", "litellm_deployment_cooled_down")


def instance_path(port: int) -> str:
    return f"/metrics/instance/{port}"


def backend(port: int) -> str:
    return f"metrics_{port}"


@dataclass(frozen=True)
class MetricsView:
    """What the templates read."""

    token_map: str = TOKEN_MAP
    front_path: str = FRONT_PATH
    excluded_labels: tuple[str, ...] = EXCLUDED_LABELS
    kept: tuple[str, ...] = KEPT_METRICS

    @staticmethod
    def instance_path(port: int) -> str:
        return instance_path(port)

    @staticmethod
    def backend(port: int) -> str:
        return backend(port)


def token_path(s: Settings) -> Path:
    assert s.metrics is not None
    return Path(s.metrics.token_file).expanduser()


def read_token(s: Settings) -> str | None:
    """The scrape token, or None when none was made yet."""
    return control_secrets.read(token_path(s))


def ensure_token(s: Settings) -> str:
    """The scrape token, made once on the control machine."""
    return control_secrets.ensure(token_path(s))


def header_digest(token: str) -> str:
    """What the front compares: the SHA-256 of the whole Authorization header a scrape sends."""
    return hashlib.sha256(f"Bearer {token}".encode()).hexdigest()


def token_map(token: str) -> str:
    """The front's map file: the one header digest it lets in."""
    return ("# The SHA-256 of the Authorization header Prometheus sends to the metrics port (managed by the\n"
            "# gateway deploy: edits here are overwritten). The token itself is never on this host.\n"
            f"{header_digest(token)} prometheus\n")


def rows(r: Rows) -> list[ManagedFile]:
    """The token's digest the front lets scrapes in with (read by its check: installed before its config)."""
    s = r.s
    token = (ensure_token(s) if r.issue else read_token(s)) if s.metrics else None
    if not token:
        return []
    return [r.system(TOKEN_MAP, "litellm_metrics_token_file (its SHA-256)", token_map(token),
                     f"lets scrapes with the metrics token in on port {s.metrics.port} (holds its SHA-256 only)",
                     restarts=(front.UNIT,))]


def retired(s: Settings) -> list[Retired]:
    if s.metrics:
        return []
    return [Retired((TOKEN_MAP,), "The metrics token's digest is gone: litellm_metrics is off",
                    (f"rm -f {TOKEN_MAP}",))]


def context(s: Settings) -> dict[str, object]:
    return {"metrics": MetricsView()}
