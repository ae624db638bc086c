"""LiteLLM `custom_auth` hook, installed next to config.yaml as gateway_auth.py.

Without a database LiteLLM answers a wrong `sk-...` key with 400 "No connected db."; clients and
the OpenAI SDK expect 401 (openai.AuthenticationError). This hook makes the master key the one
accepted key, compared in constant time, and refuses every other key with 401.
Runs inside the proxy: standard library and LiteLLM only.
"""
from __future__ import annotations

import hmac
import os

from fastapi import Request
from litellm.proxy._types import LitellmUserRoles, ProxyErrorTypes, ProxyException, UserAPIKeyAuth

MASTER_KEY_VAR = "LITELLM_MASTER_KEY"


def _refuse(message: str) -> ProxyException:
    return ProxyException(message=message, type=ProxyErrorTypes.auth_error, param="api_key", code=401)


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    master = os.environ.get(MASTER_KEY_VAR, "")
    presented = (api_key or "").removeprefix("Bearer ").strip()
    if not presented:
        raise _refuse("No API key was sent: pass 'Authorization: Bearer <key>'.")
    if master and hmac.compare_digest(presented.encode(), master.encode()):
        return UserAPIKeyAuth(api_key=presented, user_role=LitellmUserRoles.PROXY_ADMIN)
    raise _refuse("Invalid API key.")
