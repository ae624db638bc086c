"""Code that runs on the gateway hosts, with the host's own python3: standard library only.

The deploy installs this package as /usr/local/lib/litellm-gateway/on_host/ (see
gateway/services/); the deploy, its verification and the fab tasks run its modules there with
`PYTHONPATH=/usr/local/lib/litellm-gateway python3 -m on_host.MODULE` (gateway/commands.py).
Nothing here may import the control side (gateway, fabfile) or LiteLLM.
"""
