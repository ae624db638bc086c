"""The monitoring host: Prometheus, Alertmanager and the blackbox exporter, watching every gateway of
the inventory (their instances and fronts through the metrics port, their readiness and their
backends from outside).

Every file comes from one table (gateway/monitoring_files.py), checked by the service's own tool
before it replaces the live one. A changed config is reloaded (SIGHUP: Prometheus keeps its data and
its alerts' state), a changed unit restarts its service.
"""
from pyinfra import host, state
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from gateway.facts import ManagedFiles
from gateway.files import UNIT_DIR
from gateway.inventory import is_gateway, is_monitoring
from gateway.monitoring import load_monitoring, reach_address, watch
from gateway.monitoring_files import monitoring_files, ready_command, units
from gateway.operations import whole_file
from gateway.settings import load

m = load_monitoring(host.data.dict())
everyone = {h.name: h.data.dict() for h in state.inventory}
w = watch([(name, load(data)) for name, data in everyone.items() if is_gateway(data)],
          [(name, reach_address(name, load_monitoring(data).bind_address)) for name, data in everyone.items()
           if is_monitoring(data)])
table = monitoring_files(m, w, host.name, m.password())
present = host.get_fact(ManagedFiles, paths=tuple(f.path for f in table))
installed = {f.path: whole_file(name=f"{f.path} {f.wanted}", file=f, present=present[f.path]) for f in table}

services = units(m, host.name)
for unit in services:
    unit_file = installed[f"{UNIT_DIR}/{unit.name}"]
    configs = [installed[f.path] for f in table if unit.name in f.restarts and not f.is_unit]
    systemd.daemon_reload(name=f"systemd has read the changed {unit.name} unit", _if=unit_file.did_change)
    systemd.service(name=f"{unit.name} is restarted onto its changed unit", service=unit.name, running=True,
                    restarted=True, _if=unit_file.did_change)
    server.shell(name=f"{unit.name}, when running, has re-read its changed configuration (SIGHUP)",
                 commands=[f"systemctl try-reload-or-restart {unit.name}"],
                 _if=lambda configs=configs, unit_file=unit_file: (any_changed(*configs)()
                                                                   and not unit_file.did_change()))
    systemd.service(name=f"{unit.name} is enabled and running", service=unit.name, running=True, enabled=True)

server.shell(
    name="Prometheus, Alertmanager and the blackbox exporter answer as ready",
    commands=[ready_command(m)],
    _if=any_changed(*installed.values()),
)
