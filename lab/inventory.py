"""The lab's inventory: its gateway hosts, reached over SSH on their loopback addresses.

`pyinfra lab/inventory.py deploy.py` deploys into whatever `python -m lab up` built: gw1..N, and
with `--fleet N` a fleet of N gateways at the lab's floating address (HTTPS from the lab's own CA).
"""
from lab import control
from lab.fleet import lab_gateways

gateways = lab_gateways()
if control.lab_fleet():
    fleet = lab_gateways(control.lab_fleet())
