"""The monitoring host: Prometheus, Alertmanager and the blackbox exporter, watching every gateway of
the inventory (their instances and fronts through the metrics port, their readiness and their
backends from outside).

Every file comes from one table (gateway/monitoring/files.py), checked by the service's own tool
before it replaces the live one. A changed config is reloaded (SIGHUP: Prometheus keeps its data and
its alerts' state), a changed unit restarts its service.
"""
from pyinfra import host, state
from pyinfra.operations import server
from pyinfra.operations.util import any_changed

from gateway.facts import ManagedFiles
from gateway.inventory import is_gateway, is_monitoring
from gateway.monitoring.files import monitoring_files, ready_command, units
from gateway.monitoring.settings import load_monitoring, reach_address, watch
from gateway.operations import whole_file
from gateway.service_ops import apply_change, enabled_and_running, unit_read
from gateway.services.base import UNIT_DIR
from gateway.settings import load

m = load_monitoring(host.data.dict())
everyone = {h.name: h.data.dict() for h in state.inventory}
w = watch([(name, load(data)) for name, data in everyone.items() if is_gateway(data)],
          [(name, reach_address(name, load_monitoring(data).bind_address)) for name, data in everyone.items()
           if is_monitoring(data)])
table = monitoring_files(m, w, host.name, m.password())
present = host.get_fact(ManagedFiles, paths=tuple(f.path for f in table))
installed = {f.path: whole_file(name=f"{f.path} {f.wanted}", file=f, present=present[f.path]) for f in table}

for unit in units(m, host.name):
    unit_file = installed[f"{UNIT_DIR}/{unit.name}"]
    configs = [installed[f.path] for f in table if unit.name in f.restarts and not f.is_unit]
    unit_read(unit.service, unit_file)
    apply_change(unit.service, unit_file, configs)
    enabled_and_running(unit.service)

server.shell(
    name="Prometheus, Alertmanager and the blackbox exporter answer as ready",
    commands=[ready_command(m)],
    _if=any_changed(*installed.values()),
)
