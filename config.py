"""pyinfra settings for every run of deploy.py (pyinfra loads this file itself)."""
from pyinfra import config

# All or nothing: a host that cannot be reached or prepared stops the whole run before any
# operation executes, so a fleet is never left half on the old and half on the new settings.
config.FAIL_PERCENT = 0
