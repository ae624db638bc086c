"""The gateway itself: pinned virtualenv, config, rate-limit Redis, secret env file, hardened units, restart, verification.

Restart only when something the service reads changed; daemon-reload only when the unit changed;
validate a changed config with the installed LiteLLM before restarting onto it; verify through
the gateway after every (re)start, and whenever it did not answer before the run. Every whole
file is compared against one snapshot of them all (ManagedFiles), taken once while preparing.
"""
from pathlib import Path

from pyinfra import host
from pyinfra.facts.hardware import Cpus
from pyinfra.operations import files, python, server, systemd
from pyinfra.operations.util import any_changed

from gateway import render
from gateway.commands import LOGROTATE_PATH, REDIS_UNIT_PATH, SMOKE_PATH, UNIT_PATH, validate_command
from gateway.operations import ManagedFiles, ProxyAnswers, pinned_virtualenv, secret_env_file, whole_file
from gateway.settings import for_host
from gateway.team_keys import HOST_FILE_NAME, KeyStore, host_file
from gateway.verify import verify_gateway

s = for_host(host).resolved(host.get_fact(Cpus) or 1)
REPO = Path(__file__).resolve().parent.parent
SMOKE_SOURCE = REPO / "checks" / "smoke.py"
AUTH_SOURCE = REPO / "gateway" / "proxy_auth.py"
CONFIG = {name: f"{s.config_dir}/{name}" for name in
          ("logging.json", "gateway_auth.py", HOST_FILE_NAME, "redis.conf", "config.yaml")}
present = host.get_fact(ManagedFiles, paths=(*CONFIG.values(), SMOKE_PATH, UNIT_PATH, REDIS_UNIT_PATH, LOGROTATE_PATH))
answered = host.get_fact(ProxyAnswers, url=s.local_url)  # before this run changed anything

venv = pinned_virtualenv(
    name=f"Virtualenv {s.venv_dir} holds litellm[proxy]=={s.version} and its pinned extras",
    path=s.venv_dir,
    requirements=s.requirements,
)

files.directory(
    name=f"Config directory {s.config_dir} exists, root:{s.group} 0750",
    path=s.config_dir,
    user="root",
    group=s.group,
    mode="0750",
)


def service_readable(filename: str, content: str, state: str, validate: str | None = None):
    """A file in the config directory the service reads but cannot change: root:GROUP 0640."""
    path = CONFIG[filename]
    return whole_file(name=f"{path} {state}", path=path, content=content, user="root", group=s.group,
                      mode="640", present=present[path], validate=validate)


def hardened_unit(path: str, content: str):
    """A systemd unit of the deploy's, rendered whole: root:root 0644."""
    return whole_file(name=f"Hardened unit {path} is installed", path=path, content=content, user="root",
                      group="root", mode="644", present=present[path])


def current_and_running(service: str, unit, inputs: tuple, what: str):
    """`service` enabled and running; restarted once when any of `inputs` changed; systemd
    re-reads its unit when `unit` changed. True (at execution) when it was started or restarted.

    Decided at execution time (`_if=`): asking `will_change` while preparing would gather the
    facts of every input twice, the bulk of a no-change run on a fleet.
    """
    systemd.daemon_reload(name=f"systemd has read the changed {service} unit", _if=unit.did_change)
    restarted = systemd.service(
        name=f"{service} is restarted onto the changed {what}",
        service=service,
        running=True,
        restarted=True,
        _if=any_changed(*inputs),
    )
    running = systemd.service(name=f"{service} is enabled and running", service=service, running=True, enabled=True)
    return any_changed(restarted, running)


logging_config = service_readable(
    "logging.json", render.logging_json(s, host.name),
    f"sends the proxy's log to the journal and {s.log_dir}/proxy.log",
)
whole_file(
    name=f"{LOGROTATE_PATH} rotates {s.log_dir}/proxy.log daily, keeps {s.log_keep_days} old files",
    path=LOGROTATE_PATH,
    content=render.logrotate(s, host.name),
    user="root",
    group="root",
    mode="644",
    present=present[LOGROTATE_PATH],
)
auth_hook = service_readable(
    "gateway_auth.py", AUTH_SOURCE.read_text(), "lets the master key and team keys in, any other key gets 401"
)

# Read by the auth hook whenever it changes: a new, rotated or revoked key needs no restart.
service_readable(
    HOST_FILE_NAME, host_file(KeyStore(s.team_keys_file).read() if s.team_keys_file else {}),
    "holds the team keys' hashes and limits",
)

# The workers' shared rate-limit counters: a Redis of the gateway's own, on a Unix socket only.
redis_conf = service_readable(
    "redis.conf", render.redis_conf(s, host.name),
    f"keeps the rate-limit counters in memory, reachable at {s.redis_socket} only",
)
redis_unit = hardened_unit(REDIS_UNIT_PATH, render.redis_unit(s, host.name))
current_and_running("litellm-redis.service", redis_unit, (redis_conf, redis_unit), "config or unit")

# Staged and checked by the installed LiteLLM before it replaces the config in place: a config it
# refuses never reaches the disk the service (or its next restart) reads.
config = service_readable(
    "config.yaml", render.config_yaml(s, host.name),
    "holds the rendered model list and router settings, accepted by LiteLLM",
    validate=validate_command(s, "{path}"),
)
env_file = secret_env_file(
    name=f"{s.config_dir}/litellm.env holds the master key and runtime settings, 0600 root:root",
    path=f"{s.config_dir}/litellm.env",
    settings_text=render.env_settings(s, host.name),
    master_key=s.master_key,
)

whole_file(
    name=f"Smoke check is installed at {SMOKE_PATH}",
    path=SMOKE_PATH,
    content=SMOKE_SOURCE.read_text(),
    user="root",
    group="root",
    mode="755",
    present=present[SMOKE_PATH],
)

unit = hardened_unit(UNIT_PATH, render.unit(s, host.name))

server.shell(
    name=f"The new LiteLLM or auth hook accepts {s.config_dir}/config.yaml (--validate_config)",
    commands=[validate_command(s, f"{s.config_dir}/config.yaml")],
    # A changed config was checked when staged; this is for the same config under new code.
    _if=lambda: (auth_hook.did_change() or venv.did_change()) and not config.did_change(),
)

proxy_started = current_and_running(
    "litellm.service", unit, (config, auth_hook, logging_config, env_file, unit, venv),
    "config, auth hook, logging, env, unit or venv",
)

python.call(
    name="The gateway answers: ready, exactly the configured models, one chat completion",
    function=verify_gateway,
    settings=s,
    _if=lambda: proxy_started() or not answered,  # (re)started, or running but not answering (starting, hung)
)
