"""The lab's inventory: its gateway hosts, reached over SSH on their loopback addresses.

`pyinfra lab/inventory.py deploy.py` deploys into whatever `python -m lab up` built.
"""
from lab.fleet import lab_gateways

gateways = lab_gateways()
