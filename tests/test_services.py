"""The gateway host's services (gateway/services/, a component each): each declared once, and the deploy, the
managed-files table and `fab status` all read that declaration."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from gateway.services import fleet_address, front, kept_models, proxy, registry, store
from gateway.services.base import Change
from gateway.services.registry import layout, managed_files
from gateway.settings import load
from tests.test_fleet import fleet_settings
from tests.test_settings import GOOD_KEY, seed_data

REPO = Path(__file__).resolve().parent.parent


def single(**changes):
    return load(seed_data(litellm_master_key=GOOD_KEY, **changes)).resolved(2)


def test_a_gateway_runs_the_fleets_services_only_in_a_fleet():
    assert [x.unit for x in registry.on_host(single())] == [
        "litellm-redis.service", "litellm-front.service", "litellm@.service"]
    assert [x.unit for x in registry.on_host(fleet_settings(0))] == [
        "litellm-redis.service", "litellm-sentinel.service", "litellm-front.service", "litellm@.service",
        "litellm-fleet.service"]


def test_every_row_reaches_a_declared_service_and_every_service_has_its_unit_in_the_table():
    for s in (single(), fleet_settings(0)):
        rows = managed_files(s, "gw-a.example.org", '{"version": 1, "keys": {}}\n')
        hosted = {x.unit for x in registry.on_host(s)}
        reached = {unit for f in rows for unit in f.restarts}
        assert reached <= hosted, reached - hosted
        unit_files = {f.name for f in rows if f.is_unit}
        assert hosted <= unit_files, hosted - unit_files  # a changed unit reaches its own service
        for f in rows:
            if f.is_unit:
                assert f.restarts == (f.name,), f.name


def test_the_order_brings_up_what_each_service_needs_first():
    order = [x.unit for x in registry.ORDER]
    # The proxy counts in Redis (through Sentinel in a fleet) and its switch-over sets the front's states.
    for needed in (store.REDIS, store.SENTINEL, front.SERVICE):
        assert order.index(needed.unit) < order.index(proxy.SERVICE.unit)
    # The fleet's address comes to a gateway whose front answers.
    assert order.index(fleet_address.SERVICE.unit) > order.index(proxy.SERVICE.unit)
    # The front is started by the switch-over (it may take the port from the unit of before it).
    assert front.SERVICE.started_by == proxy.SERVICE.unit
    assert len(Change) == 4 and {x.change for x in registry.ORDER} == set(Change)
    assert [x.change for x in registry.ORDER] == [Change.RESTART, Change.RESTART, Change.RELOAD, Change.SWITCH_OVER,
                                                  Change.RELOAD_CONFIG, Change.RESTART]
    # The kept models are loaded once the gateway serves: a load may take minutes.
    assert order[-1] == kept_models.SERVICE.unit


def test_a_model_kept_loaded_brings_its_keeper_and_a_request_that_keeps_it():
    """keep_loaded: the keeper service, the file it reads, and keep_alive -1 on the model's deployments
    only; without a kept model neither service nor file, and an earlier deploy's are removed."""
    s = single(litellm_models={"phi3": {"tag": "phi3:3.8b", "keep_loaded": True}, "mistral": {"tag": "mistral:7b"}},
               litellm_backends={"llm1": {"address": "llm1.example.org", "models": ["phi3", "mistral"],
                                          "gpu_memory_gib": 24}})
    assert kept_models.SERVICE in registry.on_host(s)
    rows = registry.by_name(managed_files(s, "gw-a.example.org", '{"version": 1, "keys": {}}\n'))
    kept = json.loads(rows[kept_models.FILE].content)["kept"]
    assert kept == [{"api_base": "http://llm1.example.org:11434", "backend": "llm1", "model": "phi3",
                     "num_ctx": 2048, "tag": "phi3:3.8b"}]
    unit = rows[kept_models.UNIT].content.decode()
    assert "on_host.keep_loaded /etc/litellm/keep-loaded.json" in unit and "Type=notify" in unit
    config = yaml.safe_load(rows["config.yaml"].content)
    assert {d["model_name"]: d["litellm_params"].get("keep_alive") for d in config["model_list"]} == {
        "phi3": -1, "mistral": None}
    off = single()
    assert kept_models.SERVICE not in registry.on_host(off)
    assert kept_models.FILE not in registry.by_name(managed_files(off, "gw-a.example.org",
                                                                  '{"version": 1, "keys": {}}\n'))
    assert f"/etc/systemd/system/{kept_models.UNIT}" in {p for r in registry.retired(off) for p in r.paths}


def test_the_deploy_brings_every_service_up_by_its_declaration():
    """tasks/gateway.py names no service itself: it loops over the declaration (the lab's deploys
    show what each change does)."""
    task = (REPO / "tasks/gateway.py").read_text()
    assert "for service in hosted:" in task and "apply_change(service, " in task
    for unit in ("litellm-redis", "litellm-sentinel", "litellm-front", "litellm-fleet", "REDIS", "SENTINEL"):
        assert unit not in task, unit
    # Nor a feature's files: what a turned-off feature leaves is each component's `retired`.
    for name in ("TLS_PEM", "TOKEN_MAP", "FLEET_CA", "CONFIG", "front.", "metrics.", "fleet_address."):
        assert name not in task, name


def test_every_component_declares_its_rows_its_templates_part_and_what_it_leaves_when_off(tmp_path):
    for component in registry.COMPONENTS:
        for name in ("rows", "context", "retired"):
            assert callable(getattr(component, name, None)), f"{component.__name__}.{name}"
    # A feature turned off: its files are looked for and removed, by the component that owns them.
    off = single()
    gone = {path for retired in registry.retired(off) for path in retired.paths}
    assert {front.TLS_PEM, front.TLS_CERT, fleet_address.CONFIG, front.FLEET_CA} <= gone
    assert not {f.path for f in managed_files(off, "gw-a.example.org", '{"version": 1, "keys": {}}\n')} & gone
    on = fleet_settings(0, litellm_tls=None, litellm_tls_ca_dir=str(tmp_path / "ca"))
    assert on.tls and not {front.TLS_PEM, fleet_address.CONFIG} & {p for r in registry.retired(on) for p in r.paths}
    # A gateway out of the fleet: no Sentinel left voting on the fleet's primary, no firewall of its store.
    assert {f"/etc/systemd/system/{store.SENTINEL_UNIT}", f"{off.config_dir}/sentinel.conf",
            f"{off.config_dir}/{store.STORE_RULES}"} <= gone
    [sentinel] = [r for r in registry.retired(off) if "Sentinel" in r.wanted]
    assert f"systemctl disable --now {store.SENTINEL_UNIT} 2>/dev/null || true" in sentinel.commands
    assert f"nft delete table inet {store.STORE_TABLE} 2>/dev/null || true" in sentinel.commands
    assert not any("Sentinel" in r.wanted for r in registry.retired(on))


def test_fab_status_is_told_every_service_but_the_instances_which_it_reports_one_by_one():
    told = json.loads(layout(fleet_settings(0)))["services"]
    assert told == ["litellm-redis.service", "litellm-sentinel.service", "litellm-front.service",
                    "litellm-fleet.service"]
    assert json.loads(layout(single()))["services"] == ["litellm-redis.service", "litellm-front.service"]


def test_the_monitoring_hosts_services_are_brought_up_the_same_way():
    """A changed config is re-read where the service can (SIGHUP), a changed unit restarts it; the
    node exporter cannot re-read its login, so any change restarts it."""
    from gateway.monitoring.files import node_exporter_unit, units
    from gateway.monitoring.settings import load_monitoring
    from tests.test_monitoring import WEBHOOK

    m = load_monitoring({**WEBHOOK})
    kinds = {unit.name: unit.service.change for unit in units(m, "mon1.example.org")}
    assert kinds == {"litellm-prometheus.service": Change.RELOAD_CONFIG,
                     "litellm-alertmanager.service": Change.RELOAD_CONFIG,
                     "litellm-blackbox.service": Change.RELOAD_CONFIG}
    assert node_exporter_unit("0.0.0.0").service.change is Change.RESTART
    assert all(unit.service.does for unit in [*units(m, "mon1.example.org"), node_exporter_unit("0.0.0.0")])
    task = (REPO / "tasks/monitoring.py").read_text() + (REPO / "tasks/node_exporter.py").read_text()
    assert "systemd.service(" not in task and task.count("apply_change(") == 2


def test_a_config_the_release_refuses_stops_the_deploy_before_another_services_file_changes():
    """The deploy installs the rows in order and stops at the first check that fails: the proxy's
    checked files (config, auth hook) come before every other service's."""
    for s in (single(), fleet_settings(0)):
        rows = managed_files(s, "gw-a.example.org", '{"version": 1, "keys": {}}\n')
        last_checked = max(i for i, f in enumerate(rows) if f.validate and proxy.SERVICE.unit in f.restarts)
        others = [i for i, f in enumerate(rows) if f.restarts and proxy.SERVICE.unit not in f.restarts]
        assert others and last_checked < min(others), [f.name for f in rows]


def test_the_releases_checks_of_the_config_and_hook_find_the_modules_the_hook_imports():
    """LiteLLM imports the hook to check a config (and the hook check loads it): the in_proxy modules
    it imports must be installed before it and on the checks' PYTHONPATH, as on the proxy's."""
    import ast

    from gateway.services.host import HOST_LIB

    s = single()
    for command in (proxy.validate_command(s, "/etc/litellm/config.yaml"), proxy.hook_check_command(s, "x.py")):
        assert f"PYTHONPATH={HOST_LIB} " in command, command
    hook = ast.parse((REPO / "in_proxy/gateway_auth.py").read_text())
    imported = set()
    for node in ast.walk(hook):
        if isinstance(node, ast.ImportFrom) and node.module == "in_proxy":  # from in_proxy import module
            imported |= {f"in_proxy/{alias.name}.py" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("in_proxy."):
            imported.add(f"{node.module.replace('.', '/')}.py")
    assert imported and imported <= set(proxy.IN_PROXY_SOURCES), imported
    rows = [f.path for f in managed_files(s, "gw-a.example.org", '{"version": 1, "keys": {}}\n')]
    hook_row = rows.index(f"{s.config_dir}/gateway_auth.py")
    assert all(rows.index(f"{HOST_LIB}/{source}") < hook_row for source in imported)


def test_each_instance_start_records_the_digest_of_exactly_the_files_the_deploy_compares(tmp_path):
    """The unit's ExecStartPre (as root) names the files a switch-over compares, itself included, and
    writes their digest beside the slot: whoever starts an instance, the record is what it read."""
    import shlex
    import subprocess
    import sys

    from on_host.switch import inputs_digest, recorded_inputs

    s = single()
    rows = managed_files(s, "gw-a.example.org", '{"version": 1, "keys": {}}\n')
    unit = next(f for f in rows if f.name == proxy.SERVICE.unit)
    [line] = [x for x in unit.content.decode().splitlines() if x.startswith("ExecStartPre=")]
    assert line.startswith("ExecStartPre=+/usr/bin/env PYTHONPATH=/usr/local/lib/litellm-gateway /usr/bin/python3 "
                           "-m on_host.started_with "), line
    slot, *named = shlex.split(line.split(" -m on_host.started_with ", 1)[1])
    assert slot == f"{s.slots_dir}/%i"
    assert tuple(named) == proxy.read_at_start(s) and unit.path in named
    assert sorted(named) == sorted(f.path for f in rows if proxy.SERVICE.unit in f.restarts)
    # Run as the unit runs it, on copies of those files here (with the digest of their real paths).
    files = [tmp_path / f"f{i}" for i in range(len(named))]
    for i, f in enumerate(files):
        f.write_text(f"content {i}\n")
    here = tmp_path / "slots" / "4001"
    here.parent.mkdir()
    done = subprocess.run([sys.executable, "-m", "on_host.started_with", str(here), *map(str, files)],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert recorded_inputs(str(here)) == inputs_digest([str(f) for f in files])
    files[0].write_text("edited by hand\n")
    assert recorded_inputs(str(here)) != inputs_digest([str(f) for f in files])
