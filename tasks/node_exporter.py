"""The node exporter on every host the deploy manages, once the inventory has a monitoring host: the
host's disks, memory and CPU for the monitoring host's alerts, on the address the host serves on.
Without a monitoring host in the inventory (any more), none runs: an earlier one is stopped and removed."""
from pyinfra import host, state
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from gateway.facts import ManagedFiles
from gateway.inventory import is_gateway
from gateway.monitoring import NODE_EXPORTER, load_monitoring
from gateway.monitoring_auth import monitoring_password
from gateway.monitoring_files import node_exporter_files
from gateway.operations import whole_file
from gateway.settings import for_host

data = host.data.dict()
address = for_host(host).bind_address if is_gateway(data) else load_monitoring(data).bind_address
everyone = [h.data.dict() for h in state.inventory]
password = monitoring_password(everyone)
table = node_exporter_files(address, host.name, password or "")
present = host.get_fact(ManagedFiles, paths=tuple(f.path for f in table))

if password:
    changed = [whole_file(name=f"{f.path} {f.wanted}", file=f, present=present[f.path]) for f in table]
    systemd.daemon_reload(name=f"systemd has read the changed {NODE_EXPORTER} unit", _if=any_changed(*changed))
    systemd.service(name=f"{NODE_EXPORTER} is restarted onto its changed unit", service=NODE_EXPORTER,
                    running=True, restarted=True, _if=any_changed(*changed))
    systemd.service(name=f"{NODE_EXPORTER} is enabled and running", service=NODE_EXPORTER, running=True, enabled=True)
elif any(present.values()):
    server.shell(
        name=f"{NODE_EXPORTER} is gone: the inventory has no monitoring host",
        commands=[f"systemctl disable --now {NODE_EXPORTER} 2>/dev/null || true",
                  f"rm -f {' '.join(f.path for f in table)}", "systemctl daemon-reload"],
    )
