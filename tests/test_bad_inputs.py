"""Hostile values in every setting that reaches a shell command, a file, a unit, YAML or an env file.

Each must be refused while the inventory loads (before any host is touched), by a message that
names the setting. The matrix is every such setting times every kind of hostile value.
"""
from __future__ import annotations

import copy

import pytest

import inventory
from gateway.inventory import gateway_group
from gateway.settings import SettingsError, load
from tests.test_settings import GOOD_KEY, seed_data

HOSTILE = {
    "newline": "x\nLITELLM_LOG=DEBUG",
    "trailing-newline": "litellm\n",
    "carriage-return": "x\rY",
    "space": "a b",
    "single-quote": "a'b",
    "double-quote": 'a"b',
    "command-substitution": "$(touch /tmp/pwned)",
    "backticks": "`id`",
    "semicolon": "x;reboot",
    "systemd-specifier": "%n",
    "jinja": "{{ s.master_key }}",
    "nul": "a\x00b",
    "unicode": "ünïcødé",
    "very-long": "a" * 5000,
    "empty": "",
}

# setting -> how to put a value into the inventory data, and the text the error must name.
STRING_SETTINGS = {
    "litellm_version": (lambda v: {"litellm_version": v}, "litellm_version"),
    "litellm_extra_requirements": (lambda v: {"litellm_extra_requirements": [f"prisma=={v}"]},
                                   "litellm_extra_requirements"),
    "litellm_bind_address": (lambda v: {"litellm_bind_address": v}, "litellm_bind_address"),
    "litellm_instance_address": (lambda v: {"litellm_instance_address": f"127.0.0.1{v}" if v else v},
                                 "litellm_instance_address"),
    "litellm_instance_ports": (lambda v: {"litellm_instance_ports": [4001, v]}, "litellm_instance_ports"),
    "litellm_pip_index_url": (lambda v: {"litellm_pip_index_url": f"https://pypi.example.org/simple{v}" if v else v},
                              "litellm_pip_index_url"),
    "litellm_routing_strategy": (lambda v: {"litellm_routing_strategy": v}, "litellm_routing_strategy"),
    "litellm_user": (lambda v: {"litellm_user": v}, "litellm_user"),
    "litellm_group": (lambda v: {"litellm_group": v}, "litellm_group"),
    "litellm_home": (lambda v: {"litellm_home": f"/var/lib/{v}"}, "litellm_home"),
    "litellm_venv_dir": (lambda v: {"litellm_venv_dir": f"/opt/{v}"}, "litellm_venv_dir"),
    "litellm_config_dir": (lambda v: {"litellm_config_dir": f"/etc/{v}"}, "litellm_config_dir"),
    "litellm_log_dir": (lambda v: {"litellm_log_dir": f"/var/log/{v}"}, "litellm_log_dir"),
    "litellm_master_key": (lambda v: {"litellm_master_key": GOOD_KEY + v if v else v}, "litellm_master_key"),
    "litellm_workers": (lambda v: {"litellm_workers": v}, "litellm_workers"),
    "litellm_dns_nameservers": (lambda v: {"litellm_dns_nameservers": [v]}, "litellm_dns_nameservers"),
    "litellm_preflight_skip": (lambda v: {"litellm_preflight_skip": [v]}, "litellm_preflight_skip"),
    "litellm_tls_names": (lambda v: {"litellm_tls": "own-ca", "litellm_tls_names": [f"api.example.org{v}" if v else v]},
                          "litellm_tls_names"),
    "model name": (lambda v: _model_named(v), "litellm_models["),
    "model tag": (lambda v: _model_field("tag", v), "litellm_models['phi3-3.8b'].tag"),
    "model mode": (lambda v: _model_field("mode", v), "litellm_models['phi3-3.8b'].mode"),
    "backend name": (lambda v: _backend_named(v), "litellm_backends["),
    "backend address": (lambda v: _backend_field("address", f"llm01{v}" if v else v),
                        "litellm_backends['hx-llm01-server'].address"),
    "backend api_base": (lambda v: _backend_api_base(f"http://llm01{v}:11434" if v else v),
                         "litellm_backends['hx-llm01-server']"),
    "backend model entry": (lambda v: _backend_field("models", [v]), "litellm_backends['hx-llm01-server'].models"),
}
# Control-side only (a file on the operator's machine): any printable path is fine, control characters are not.
CONTROL_CHARACTERS = ("newline", "trailing-newline", "carriage-return", "nul", "empty")


def _model_named(name: str) -> dict:
    data = seed_data()
    data["litellm_models"][name] = {"tag": "phi3:mini"}
    data["litellm_backends"]["hx-llm01-server"]["models"].append(name)
    return data


def _model_field(field: str, value) -> dict:
    data = seed_data()
    data["litellm_models"]["phi3-3.8b"][field] = value
    return data


def _backend_named(name: str) -> dict:
    data = seed_data()
    data["litellm_backends"][name] = {"address": "llm03.example.org", "models": ["phi3-3.8b"]}
    return data


def _backend_field(field: str, value) -> dict:
    data = seed_data()
    data["litellm_backends"]["hx-llm01-server"][field] = value
    return data


def _backend_api_base(url: str) -> dict:
    data = seed_data()
    data["litellm_backends"]["hx-llm01-server"] = {"api_base": url, "models": list(inventory.MODELS)}
    return data


CASES = [(setting, kind) for setting in STRING_SETTINGS for kind in HOSTILE]


@pytest.mark.parametrize("setting,kind", CASES, ids=[f"{s}:{k}" for s, k in CASES])
def test_every_hostile_value_is_refused_naming_the_setting(setting, kind):
    build, where = STRING_SETTINGS[setting]
    data = build(HOSTILE[kind])
    data = data if "litellm_models" in data and "litellm_backends" in data else seed_data(**data)
    with pytest.raises(SettingsError) as caught:
        load(data)
    message = str(caught.value)
    assert where in message, message
    # Shown as repr and cut short: no raw newline starts a line of its own, no 5,000-character echo.
    assert all(line.startswith("  - ") for line in message.splitlines()[1:]) and len(message) < 1500, message
    assert GOOD_KEY not in message  # a key is never echoed


@pytest.mark.parametrize("kind", CONTROL_CHARACTERS)
def test_team_keys_file_with_control_characters_is_refused(kind):
    with pytest.raises(SettingsError, match="litellm_team_keys_file"):
        load(seed_data(litellm_team_keys_file="/root/keys" + HOSTILE[kind] if HOSTILE[kind] else ""))


@pytest.mark.parametrize("key", [
    "sk-" + "9f3a7c1e5b2d4086" * 3 + "\nLITELLM_LOG=DEBUG",  # the issue's: a second variable in litellm.env
    "sk-" + "9f3a7c1e5b2d4086" * 3 + " trailing",
    "sk-" + "9f3a7c1e5b2d4086" * 3 + "\t",
    "sk-" + "9f3a7c1e5b2d4086" * 3 + "$HOME",
    "sk-" + "9f3a7c1e5b2d4086" * 3 + "\\",
    "sk-" + "9f3a7c1e5b2d4086" * 3 + "é",
    "sk-" + "9f3a7c1e5b2d4086" * 20,  # 320 characters after sk-
])
def test_a_master_key_that_is_not_one_printable_token_is_refused(key):
    with pytest.raises(SettingsError) as caught:
        load(seed_data(litellm_master_key=key))
    assert "litellm_master_key: refused: it is not one token of printable characters" in str(caught.value)
    assert key not in str(caught.value)


@pytest.mark.parametrize("name", ["root", "www-data", "nobody", "daemon", "ubuntu", "sshd", "systemd-network", "redis"])
def test_system_and_people_accounts_are_refused_as_the_service_account(name):
    for setting in ("litellm_user", "litellm_group"):
        with pytest.raises(SettingsError) as caught:
            load(seed_data(**{setting: name}))
        assert f"{setting}: {name!r} is an account of the system or of people" in str(caught.value)


def test_the_issue_s_root_root_inventory_is_refused():
    with pytest.raises(SettingsError) as caught:
        load(seed_data(litellm_user="root", litellm_group="root"))
    assert len(caught.value.problems) == 2


@pytest.mark.parametrize("value", ["fe80::1%eth0", "fe80::1%$(reboot)"])
def test_an_address_with_a_scope_is_refused(value):
    with pytest.raises(SettingsError, match="litellm_bind_address"):
        load(seed_data(litellm_bind_address=value))


HOST_ENTRIES = [
    ("gw\nmaster_key: x", {}, "host name"),
    ("gw1.example.org", {"ssh_hostname": "10.0.0.1; reboot"}, "ssh_hostname"),
    ("gw1.example.org", {"ssh_user": "root\n"}, "ssh_user"),
    ("gw1.example.org", {"ssh_port": "22"}, "ssh_port"),
    ("gw1.example.org", {"ssh_port": 0}, "ssh_port"),
    ("gw1.example.org", {"ssh_strict_host_key_checking": "maybe"}, "ssh_strict_host_key_checking"),
    ("gw1.example.org", {"ssh_key": "/root/.ssh/id\n"}, "ssh_key"),
    ("gw1.example.org", {"_sudo": "yes"}, "_sudo"),
]


@pytest.mark.parametrize("name,host_data,where", HOST_ENTRIES, ids=[e[2] for e in HOST_ENTRIES])
def test_the_inventory_s_host_entries_are_checked_on_load(name, host_data, where):
    with pytest.raises(SystemExit) as caught:
        gateway_group([(name, host_data)], copy.deepcopy(seed_data(litellm_master_key=GOOD_KEY)))
    assert where in str(caught.value.code) and "Nothing was changed on any host" in str(caught.value.code)


def test_every_accepted_seed_value_still_loads():
    """The matrix refuses hostile values, not ordinary ones: the seed fleet with every string setting set."""
    s = load(seed_data(litellm_master_key=GOOD_KEY, litellm_user="llmgw", litellm_group="llmgw",
                       litellm_home="/var/lib/llm-gw", litellm_venv_dir="/opt/llm_gw/venv-1.108.7",
                       litellm_config_dir="/etc/llm-gw", litellm_log_dir="/var/log/llm-gw",
                       litellm_bind_address="::", litellm_dns_nameservers=["10.0.0.53", "fd00::53"]))
    assert (s.user, s.venv_dir, s.master_key) == ("llmgw", "/opt/llm_gw/venv-1.108.7", GOOD_KEY)
