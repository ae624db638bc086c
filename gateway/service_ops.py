"""The deploy's operations that bring a service onto its changed files, as its kind of change says
(gateway/services/): one way for the gateway's services (tasks/gateway.py) and the monitoring
host's (tasks/monitoring.py). The proxy's switch-over is the gateway task's own.

Decided at execution time (`_if=`): asking `will_change` while preparing would gather the facts
of every input twice, the bulk of a no-change run on a fleet.
"""
from __future__ import annotations

from pyinfra.api.operation import OperationMeta
from pyinfra.operations import server, systemd
from pyinfra.operations.util import any_changed

from gateway.services.base import Change, Service


def unit_read(service: Service, unit_file: OperationMeta) -> None:
    systemd.daemon_reload(name=f"systemd has read the changed {service.unit} unit", _if=unit_file.did_change)


def apply_change(service: Service, unit_file: OperationMeta, files: list[OperationMeta]) -> None:
    """`files`: the service's other files (configs, certificates), whose change it must see."""
    unit = service.unit
    if service.change is Change.RESTART:
        systemd.service(name=f"{unit} is restarted onto its changed files", service=unit, running=True,
                        restarted=True, _if=any_changed(unit_file, *files))
    elif service.change is Change.RELOAD:
        server.shell(name=f"{unit}, when running, has reloaded its changed files (the listening socket is handed over)",
                     commands=[f"systemctl try-reload-or-restart {unit}"], _if=any_changed(unit_file, *files))
    elif service.change is Change.RELOAD_CONFIG:
        systemd.service(name=f"{unit} is restarted onto its changed unit", service=unit, running=True,
                        restarted=True, _if=unit_file.did_change)
        server.shell(name=f"{unit}, when running, has re-read its changed configuration (reload)",
                     commands=[f"systemctl try-reload-or-restart {unit}"],
                     _if=lambda: any_changed(*files)() and not unit_file.did_change())
    else:
        raise ValueError(f"{unit}: a {service.change.value} is the deploy task's own step")


def enabled_and_running(service: Service) -> None:
    systemd.service(name=f"{service.unit} is enabled and running: it {service.does}", service=service.unit,
                    running=True, enabled=True)
