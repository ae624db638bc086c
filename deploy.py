"""`pyinfra inventory.py deploy.py`: turn the inventory's gateway hosts into working LiteLLM gateways.

Only dispatches; each step lives in tasks/. Preflight runs first and raises before any
operation exists, so a refused run changes nothing on any host.
"""
from pyinfra import local

local.include("tasks/preflight.py")
local.include("tasks/account.py")
local.include("tasks/packages.py")
local.include("tasks/gateway.py")
