"""The lab's inventory: its gateway hosts, reached over SSH on their loopback addresses.

`pyinfra lab/inventory.py deploy.py` deploys into whatever `python -m lab up` built: gw1..N, and
with `--fleet N` a fleet of N gateways at the lab's floating address (HTTPS from the lab's own CA),
and mon1 watching them all (unless `--no-monitoring`).
"""
from lab import control
from lab.fleet import lab_gateways, lab_monitoring

gateways = lab_gateways()
if control.lab_fleet():
    fleet = lab_gateways(control.lab_fleet())
if control.lab_monitoring():
    monitoring = lab_monitoring()
