"""Code that runs inside the LiteLLM proxy, in every worker: hooks it imports from its config.

The deploy installs gateway_auth.py beside config.yaml (see gateway/services/), staged and checked
by the installed LiteLLM's Python before it replaces the live one. It may import the standard
library, LiteLLM and what LiteLLM brings (fastapi); never the control side.
"""
