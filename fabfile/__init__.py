"""Operator tasks for the gateway fleet: `fab --list`, `fab --help TASK`.

Hosts come from the deploy's own inventory (`litellm.inventory` in a fabric.yaml, or
FABRIC_LITELLM_INVENTORY=path; default inventory.py), reached with its SSH settings and host-key
checking (gateway/ssh_trust.py). Every task works on the whole fleet at once unless `--only` (or
fab's `-H`) narrows it. A host that cannot be reached is reported and the others still are; a
task exits non-zero when anything it looked at is unhealthy.

`status`, `logs` and `restart` keep the names the seed's operators type; team keys are a
namespace of their own: `fab keys.create`, `keys.list`, `keys.rotate`, `keys.revoke`, `keys.push`.
"""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # fab loads this package by its path; its modules import the control side
    sys.path.insert(0, str(REPO))

from invoke import Collection  # noqa: E402

from fabfile import keys  # noqa: E402
from fabfile.backends import health  # noqa: E402
from fabfile.fleet import drain, primary_off, undrain  # noqa: E402
from fabfile.gateways import logs, restart, rollback, trial, validate  # noqa: E402
from fabfile.status import status  # noqa: E402
from fabfile.usage import usage_task  # noqa: E402

ns = Collection(status, logs, restart, rollback, health, validate, trial, drain, undrain, primary_off, usage_task,
                Collection.from_module(keys))
ns.configure({"litellm": {"inventory": str(REPO / "inventory.py")}})
