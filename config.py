"""pyinfra settings for every run of deploy.py (pyinfra loads this file itself)."""
from pyinfra import config

from gateway.ssh_transport import tune_pyinfra_connections

# All or nothing: a host that cannot be reached or prepared stops the whole run before any
# operation executes, so a fleet is never left half on the old and half on the new settings.
config.FAIL_PERCENT = 0

# Each fact and command costs one round trip instead of one delayed ACK (see gateway/ssh_transport.py).
tune_pyinfra_connections()
