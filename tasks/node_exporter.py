"""The node exporter on every host the deploy manages, once the inventory has a monitoring host: the
host's disks, memory and CPU for the monitoring host's alerts, on the address the host serves on.
Without a monitoring host in the inventory (any more), none runs: an earlier one is stopped and removed."""
from pyinfra import host, state
from pyinfra.operations import server

from gateway.facts import ManagedFiles
from gateway.inventory import is_gateway
from gateway.monitoring.auth import monitoring_password
from gateway.monitoring.files import node_exporter_files, node_exporter_unit
from gateway.monitoring.settings import NODE_EXPORTER, load_monitoring
from gateway.operations import whole_file
from gateway.service_ops import apply_change, enabled_and_running, unit_read
from gateway.services.base import UNIT_DIR
from gateway.settings import for_host

data = host.data.dict()
address = for_host(host).bind_address if is_gateway(data) else load_monitoring(data).bind_address
everyone = [h.data.dict() for h in state.inventory]
password = monitoring_password(everyone)
table = node_exporter_files(address, host.name, password or "")
present = host.get_fact(ManagedFiles, paths=tuple(f.path for f in table))

if password:
    installed = {f.path: whole_file(name=f"{f.path} {f.wanted}", file=f, present=present[f.path]) for f in table}
    service = node_exporter_unit(address).service
    unit_file = installed[f"{UNIT_DIR}/{NODE_EXPORTER}"]
    unit_read(service, unit_file)
    apply_change(service, unit_file, [change for path, change in installed.items() if change is not unit_file])
    enabled_and_running(service)
elif any(present.values()):
    server.shell(
        name=f"{NODE_EXPORTER} is gone: the inventory has no monitoring host",
        commands=[f"systemctl disable --now {NODE_EXPORTER} 2>/dev/null || true",
                  f"rm -f {' '.join(f.path for f in table)}", "systemctl daemon-reload"],
    )
