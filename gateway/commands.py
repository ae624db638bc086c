"""Where the deploy puts things on a gateway host, and the command lines that use them.

The deploy, its verification and the operator tasks all run these, so they live in one place.
"""
from __future__ import annotations

import shlex

from gateway.settings import Settings

UNIT_PATH = "/etc/systemd/system/litellm.service"
REDIS_UNIT_PATH = "/etc/systemd/system/litellm-redis.service"
SMOKE_PATH = "/usr/local/libexec/litellm-gateway-smoke"
LOGROTATE_PATH = "/etc/logrotate.d/litellm"


def validate_command(settings: Settings, config_path: str) -> str:
    """The installed LiteLLM's own check of a config file, offline (no cost-map download)."""
    return (f"LITELLM_LOCAL_MODEL_COST_MAP=True {settings.venv_dir}/bin/litellm "
            f"--config {shlex.quote(config_path)} --validate_config")


def smoke_command(settings: Settings, url: str, ready_timeout: int) -> str:
    """The smoke check on the host: ready, exactly the configured models, one completion."""
    expected = sorted({model.name for model, _ in settings.deployments})
    return " ".join([
        "python3", SMOKE_PATH, "--url", shlex.quote(url),
        "--key-env-file", shlex.quote(f"{settings.config_dir}/litellm.env"),
        "--ready-timeout", str(ready_timeout), "--expect", *map(shlex.quote, expected),
    ])
