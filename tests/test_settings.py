"""Settings: defaults, the seed fleet, and an error for every kind of bad value."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

import inventory
from gateway.settings import SEED_PLACEHOLDER_KEY, SettingsError, load, weak_key_reason

REPO = Path(__file__).resolve().parent.parent
GOOD_KEY = "sk-" + "9f3a7c1e5b2d4086" * 4


def seed_data(**overrides):
    data = {"litellm_models": copy.deepcopy(inventory.MODELS), "litellm_backends": copy.deepcopy(inventory.BACKENDS)}
    data.update(overrides)
    return data


def test_seed_fleet_loads_with_the_seed_defaults():
    s = load(seed_data())
    assert [m.name for m in s.models] == ["phi3-3.8b", "llama3-8b", "llama3.1-8b", "mistral-7b", "gemma2-9b"]
    assert s.models[0].tag == "phi3:3.8b-mini-128k-instruct-q8_0"
    assert len(s.deployments) == 10  # five models on each of two backends
    assert (s.port, s.routing_strategy, s.timeout, s.num_retries) == (4000, "least-busy", 30, 2)
    assert (s.user, s.uid, s.gid) == ("litellm", 1002, 1002)
    assert (s.venv_dir, s.config_dir, s.log_dir) == ("/opt/litellm", "/etc/litellm", "/var/log/litellm")
    assert s.requirements == "litellm[proxy]==1.108.7\nprisma==0.15.0\nprometheus-client==0.23.1\nhttptools==0.9.0\n"
    assert s.backends[0].api_base == "http://hx-llm01-server.dev-test.hana-x.ai:11434"


def test_every_setting_is_declared_once_with_a_line_of_help_and_the_docs_table_is_made_from_it():
    """docs/settings.md is what `python -m gateway.settings_doc` prints from the declarations."""
    import subprocess
    import sys

    from gateway.monitoring import settings as monitoring
    from gateway.settings import DECLARED

    for declared, prefix in ((DECLARED, "litellm_"), (monitoring.DECLARED, "monitoring_")):
        names = [s.name for s in declared]
        assert len(names) == len(set(names)) and all(n.startswith(prefix) for n in names)
        assert all(s.help and "\n" not in s.help and len(s.help) <= 140 for s in declared), prefix
    printed = subprocess.run([sys.executable, "-m", "gateway.settings_doc"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
    assert (REPO / "docs/settings.md").read_text() == printed, "run: python -m gateway.settings_doc > docs/settings.md"
    assert printed.count("| `litellm_") == len(DECLARED) and printed.count("| `monitoring_") == len(monitoring.DECLARED)


def test_master_key_is_kept_but_never_in_repr():
    s = load(seed_data(litellm_master_key=GOOD_KEY))
    assert s.master_key == GOOD_KEY
    assert GOOD_KEY not in repr(s)
    assert load(seed_data()).master_key is None


BAD = [
    ({"litellm_port": 70000}, "litellm_port", "out of range"),
    ({"litellm_port": "4000"}, "litellm_port", "not a whole number"),
    ({"litellm_workers": 0}, "litellm_workers", "neither 'auto'"),
    ({"litellm_workers": "many"}, "litellm_workers", "nor a whole number from 1 to 64"),
    ({"litellm_timeout": 0}, "litellm_timeout", "out of range"),
    ({"litellm_routing_strategy": "round-robin"}, "litellm_routing_strategy", "least-busy"),
    ({"litellm_bind_address": "gateway.local"}, "litellm_bind_address", "not an IP address"),
    ({"litellm_version": ">=1.100"}, "litellm_version", "exact release"),
    ({"litellm_version": "latest"}, "litellm_version", "exact release"),
    ({"litellm_extra_requirements": ["prisma>=0.15"]}, "litellm_extra_requirements", "exact pin"),
    ({"litellm_venv_dir": "/home/litellm/venv"}, "litellm_venv_dir", "ProtectHome"),
    ({"litellm_config_dir": "etc/litellm"}, "litellm_config_dir", "absolute path"),
    ({"litellm_log_dir": "/srv/log"}, "litellm_log_dir", "under /var/log/"),
    ({"litellm_log_keep_days": 0}, "litellm_log_keep_days", "out of range"),
    ({"litellm_user": "Lite LLM"}, "litellm_user", "system user"),
    ({"litellm_uid": 0}, "litellm_uid", "out of range"),
    ({"litellm_master_key": SEED_PLACEHOLDER_KEY}, "litellm_master_key", "placeholder"),
    ({"litellm_master_key": "sk-1234"}, "litellm_master_key", "placeholder/default"),
    ({"litellm_master_key": "sk-short"}, "litellm_master_key", "at least 32"),
    ({"litellm_master_key": "abc" * 20}, "litellm_master_key", "start with 'sk-'"),
    ({"litellm_master_key": "sk-" + "a" * 40}, "litellm_master_key", "distinct"),
    ({"litellm_models": {}}, "litellm_models", "no models"),
    ({"litellm_backends": {}}, "litellm_backends", "no backends"),
    ({"litellm_moddels": {}}, "litellm_moddels", "unknown setting"),
]


@pytest.mark.parametrize("override,where,text", BAD, ids=[f"{b[1]}:{b[2]}" for b in BAD])
def test_each_bad_setting_names_itself_and_the_fix(override, where, text):
    with pytest.raises(SettingsError) as caught:
        load(seed_data(**override))
    message = str(caught.value)
    assert where in message and text in message, message


def test_model_and_backend_mistakes_are_each_reported():
    data = seed_data()
    data["litellm_models"]["orphan-1b"] = {"tag": "orphan:1b"}
    data["litellm_models"]["bad-tag"] = {"tag": "has space"}
    data["litellm_backends"]["hx-llm01-server"]["models"].append("ghost-7b")
    data["litellm_backends"]["hx-llm02-server"]["port"] = 0
    with pytest.raises(SettingsError) as caught:
        load(data)
    problems = "\n".join(caught.value.problems)
    assert "litellm_models['orphan-1b']: no backend serves it" in problems
    assert "litellm_models['bad-tag'].tag" in problems
    assert "'ghost-7b' is not defined in litellm_models" in problems
    assert "litellm_backends['hx-llm02-server'].port" in problems
    assert len(caught.value.problems) >= 4  # all at once, not the first only


def test_refused_key_is_never_echoed():
    key = "sk-please-replace-" + "0123456789abcdef" * 2
    with pytest.raises(SettingsError) as caught:
        load(seed_data(litellm_master_key=key))
    assert key not in str(caught.value)


def test_generated_style_key_is_accepted():
    assert weak_key_reason(GOOD_KEY) is None


def test_bad_inventory_stops_pyinfra_before_connecting(tmp_path):
    """The inventory helper checks settings on load: pyinfra never reaches 'Connecting'."""
    bad = tmp_path / "inventory.py"
    bad.write_text(
        "from gateway.inventory import gateway_group\n"
        "import inventory as seed\n"
        "gateways = gateway_group(['gw.invalid'], {'litellm_models': seed.MODELS,"
        " 'litellm_backends': seed.BACKENDS, 'litellm_port': 0})\n"
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pyinfra"), "-y", str(bad), "deploy.py"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "litellm_port: 0 is out of range" in output
    assert "Nothing was changed" in output
    assert "Connecting" not in output


def test_api_base_ending_in_v1_is_refused_with_the_root_url():
    data = seed_data()
    data["litellm_backends"]["hx-llm01-server"] = {"api_base": "http://llm01.example.org:11434/v1",
                                                   "models": ["phi3-3.8b"]}
    with pytest.raises(SettingsError) as caught:
        load(data)
    assert "ends in /v1" in str(caught.value) and "'http://llm01.example.org:11434'" in str(caught.value)


def test_api_base_gives_address_and_port():
    data = seed_data()
    data["litellm_backends"]["hx-llm01-server"] = {"api_base": "http://10.0.0.5:11500",
                                                   "models": list(inventory.MODELS)}
    backend = load(data).backends[0]
    assert (backend.address, backend.port, backend.api_base) == ("10.0.0.5", 11500, "http://10.0.0.5:11500")


def test_duplicate_model_names_are_refused():
    data = seed_data()
    data["litellm_models"]["PHI3-3.8b"] = {"tag": "phi3:mini"}
    with pytest.raises(SettingsError) as caught:
        load(data)
    assert "duplicates the model name 'phi3-3.8b'" in str(caught.value)


def test_preflight_settings():
    s = load(seed_data(litellm_dns_nameservers="10.0.0.53, 10.0.0.54", litellm_preflight_skip="dns"))
    assert s.dns_nameservers == ("10.0.0.53", "10.0.0.54") and s.preflight_skip == {"dns"}
    with pytest.raises(SettingsError, match="only dns, backends can be skipped"):
        load(seed_data(litellm_preflight_skip=["settings"]))
    with pytest.raises(SettingsError, match="litellm_dns_nameservers"):
        load(seed_data(litellm_dns_nameservers=["ns1.example.org"]))


def test_auto_workers_are_one_per_cpu_at_most_eight_and_a_number_stays():
    auto = load(seed_data(litellm_master_key=GOOD_KEY))
    assert auto.workers == "auto"
    assert [auto.resolved(cpus).workers for cpus in (1, 2, 8, 64)] == [1, 2, 8, 8]
    fixed = load(seed_data(litellm_master_key=GOOD_KEY, litellm_workers=3))
    assert fixed.resolved(64).workers == 3


def test_context_windows_are_declared_per_model_and_may_differ_per_backend():
    data = seed_data()
    data["litellm_models"]["llama3-8b"]["context_window"] = 8192
    data["litellm_backends"]["hx-llm02-server"]["context_windows"] = {"phi3-3.8b": 4096}
    s = load(data)
    windows = {(m.name, b.name): s.window(m, b) for m, b in s.deployments}
    assert windows[("phi3-3.8b", "hx-llm01-server")] == 2048  # the seed's figure, by default
    assert windows[("phi3-3.8b", "hx-llm02-server")] == 4096
    assert windows[("llama3-8b", "hx-llm01-server")] == windows[("llama3-8b", "hx-llm02-server")] == 8192
    assert (s.context_check, s.context_margin) == (True, 25)


def test_context_window_mistakes_are_named():
    data = seed_data(litellm_context_margin=500, litellm_context_check="yes")
    data["litellm_models"]["phi3-3.8b"] = {"tag": "phi3:mini", "max_input_tokens": 2048}
    data["litellm_models"]["mistral-7b"]["context_window"] = 100
    data["litellm_backends"]["hx-llm01-server"]["context_windows"] = {"ghost-1b": 4096}
    with pytest.raises(SettingsError) as caught:
        load(data)
    problems = "\n".join(caught.value.problems)
    assert "litellm_models['phi3-3.8b'].max_input_tokens: is now context_window" in problems
    assert "litellm_models['mistral-7b'].context_window: 100 is out of range" in problems
    assert ("litellm_backends['hx-llm01-server'].context_windows: 'ghost-1b' is not among this backend's "
            "models") in problems
    assert "litellm_context_margin: 500 is out of range" in problems
    assert "litellm_context_check: 'yes' is not True or False" in problems


def test_the_readme_leads_to_the_settings_table():
    assert "](docs/settings.md)" in (REPO / "README.md").read_text()


def test_a_setting_taken_as_it_is_is_checked_by_its_declaration_alone():
    """Adding such a setting is its declaration (name, default, help, check) and the Settings field
    of its name: the check on the declaration refuses a wrong value naming what is allowed, and the
    field holds a right one."""
    import dataclasses

    from gateway.monitoring import settings as monitoring
    from gateway.settings import DECLARED, Flag, Settings, SettingsError, Whole

    fields = {f.name for f in dataclasses.fields(Settings)}
    checked = [s for s in DECLARED if s.check]
    assert len(checked) >= 15 and all(s.name.removeprefix("litellm_") in fields for s in checked)
    monitoring_fields = {f.name for f in dataclasses.fields(monitoring.MonitoringSettings)}
    assert all(s.name.removeprefix("monitoring_") in monitoring_fields for s in monitoring.DECLARED if s.check)
    for s in checked:
        field_name = s.name.removeprefix("litellm_")
        if isinstance(s.check, Whole):
            wrong, right = s.check.high + 1, s.check.low
            said = f"set an integer from {s.check.low} to {s.check.high}"
        else:
            assert isinstance(s.check, Flag)
            wrong, right, said = "yes", False, "is not True or False"
        with pytest.raises(SettingsError) as refused:
            load(seed_data(**{s.name: wrong}))
        assert any(p.startswith(f"{s.name}: ") and said in p for p in refused.value.problems), refused.value.problems
        assert getattr(load(seed_data(**{s.name: right})), field_name) == right
