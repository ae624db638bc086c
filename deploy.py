"""`pyinfra inventory.py deploy.py`: turn the inventory's gateway hosts into working LiteLLM gateways,
and its monitoring hosts into their watchers.

Only dispatches, by each host's roles; each step lives in tasks/. Preflight runs first and raises
before any operation exists, so a refused run changes nothing on any host.
"""
from pyinfra import host, local

from gateway.inventory import is_gateway, is_monitoring

data = host.data.dict()
if is_gateway(data):
    local.include("tasks/preflight.py")
    local.include("tasks/account.py")
local.include("tasks/packages.py")
if is_gateway(data):
    local.include("tasks/gateway.py")
local.include("tasks/node_exporter.py")
if is_monitoring(data):
    local.include("tasks/monitoring.py")
