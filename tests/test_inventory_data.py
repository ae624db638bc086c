"""fab and `python -m checks` read the inventory as pyinfra does (gateway/inventory_reader.py): group data,
group_data/ files in the working directory and beside the inventory, host data; compared here with
pyinfra's own loader, run in a process of its own (it patches threads with gevent)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from gateway.inventory_reader import host_data

PYINFRA_VIEW = textwrap.dedent("""
    import json, sys
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory
    ctx_state.set(State(check_for_changes=False))  # as pyinfra's CLI does before it reads the inventory
    inventory = make_inventory(sys.argv[1], cwd=sys.argv[2])
    keys = sys.argv[3].split(",")
    print(json.dumps({h.name: {k: h.data.get(k) for k in keys} for h in inventory}))
""")
KEYS = ("litellm_timeout", "litellm_port", "litellm_workers", "litellm_drain_timeout", "litellm_log_keep_days",
        "litellm_num_retries", "os")


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_group_data_files_and_host_data_merge_as_pyinfra_merges_them(tmp_path):
    work, site = tmp_path / "work", tmp_path / "site"
    write(site / "inventory.py", """
        gateways = (["gw1", ("gw2", {"litellm_port": 4100})], {"litellm_timeout": 20, "litellm_workers": 2})
        canary = ["gw2"]
    """)
    # Beside the inventory: over the working directory's; an imported name is not a setting.
    write(site / "group_data" / "all.py", """
        import os
        litellm_timeout = 5
        litellm_drain_timeout = 90
    """)
    write(site / "group_data" / "gateways.py", "litellm_workers = 3\nlitellm_num_retries = 1\n")
    write(site / "group_data" / "canary.py", "litellm_num_retries = 4\nlitellm_port = 4200\n")
    write(work / "group_data" / "all.py", "litellm_drain_timeout = 30\nlitellm_log_keep_days = 7\n")
    write(work / "group_data" / "inventory.py", "litellm_log_keep_days = 9\n")  # the file's own group

    read = host_data(str(site / "inventory.py"), str(work))
    ours = {host: {k: data.get(k) for k in KEYS} for host, data in read.items()}
    theirs = json.loads(subprocess.run([sys.executable, "-c", PYINFRA_VIEW, str(site / "inventory.py"), str(work),
                                        ",".join(KEYS)], cwd=work, capture_output=True, text=True, check=True).stdout)
    assert ours == theirs
    # What that means, so the comparison cannot pass by both reading nothing:
    assert ours["gw1"] == {"litellm_timeout": 20, "litellm_port": None, "litellm_workers": 3,
                           "litellm_drain_timeout": 90, "litellm_log_keep_days": 9, "litellm_num_retries": 1,
                           "os": None}
    assert ours["gw2"]["litellm_port"] == 4100 and ours["gw2"]["litellm_num_retries"] == 4
