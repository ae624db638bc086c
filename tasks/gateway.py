"""The gateway itself: pinned virtualenv, the managed files, rate-limit Redis, hardened units, restart, verification.

Every file comes from one table (gateway/files.py) and is compared against one snapshot of them
all (ManagedFiles), taken once while preparing. Restart only when something the service reads
changed; daemon-reload only when its unit changed; a changed config or auth hook is checked by
the installed LiteLLM before it replaces the live one; verify through the gateway after every
(re)start, and whenever it did not answer before the run.
"""
from pyinfra import host
from pyinfra.facts.hardware import Cpus
from pyinfra.operations import files, python, server, systemd
from pyinfra.operations.util import any_changed

from gateway.commands import validate_command
from gateway.facts import ManagedFiles, ProxyAnswers
from gateway.files import PROXY, REDIS, by_name, managed_files
from gateway.lock import lock_path, read_lock
from gateway.operations import pinned_virtualenv, secret_env_file, whole_file
from gateway.settings import for_host
from gateway.verify import verify_gateway

s = for_host(host).resolved(host.get_fact(Cpus) or 1)
table = managed_files(s, host.name)
present = host.get_fact(ManagedFiles, paths=tuple(f.path for f in table if not f.secret))
answered = host.get_fact(ProxyAnswers, url=s.local_url)  # before this run changed anything

lock, _ = read_lock(s.requirements)  # the preflight refused a run without it
venv = pinned_virtualenv(
    name=f"Virtualenv {s.venv_dir} holds exactly the packages of {lock_path(s.requirements).name} (hash-checked)",
    path=s.venv_dir,
    requirements=lock,
)

files.directory(
    name=f"Config directory {s.config_dir} exists, root:{s.group} 0750",
    path=s.config_dir,
    user="root",
    group=s.group,
    mode="0750",
)

installed = {}
for f in table:
    if f.secret:
        installed[f.name] = secret_env_file(
            name=f"{f.path} {f.wanted}, 0{f.mode} {f.user}:{f.group}",
            path=f.path,
            settings_text=f.content.decode(),
            master_key=s.master_key,
        )
    else:
        installed[f.name] = whole_file(name=f"{f.path} {f.wanted}", file=f, present=present[f.path])


def current_and_running(service: str, what: str, also: tuple = ()):
    """`service` enabled and running; restarted once when a file it restarts on (or `also`) changed;
    systemd re-reads its unit when that changed. True (at execution) when it was started or restarted.

    Decided at execution time (`_if=`): asking `will_change` while preparing would gather the
    facts of every input twice, the bulk of a no-change run on a fleet.
    """
    inputs = tuple(installed[f.name] for f in table if service in f.restarts) + also
    unit = installed[service]
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


current_and_running(REDIS, "config or unit")

server.shell(
    name=f"The new LiteLLM accepts {s.config_dir}/config.yaml (--validate_config)",
    commands=[validate_command(s, by_name(table)["config.yaml"].path)],
    # A changed config was checked when staged; this is for the same config under new code.
    _if=lambda: venv.did_change() and not installed["config.yaml"].did_change(),
)

proxy_started = current_and_running(PROXY, "config, auth hook, logging, env, unit or venv", also=(venv,))

python.call(
    name="The gateway answers: ready, exactly the configured models, one chat completion",
    function=verify_gateway,
    settings=s,
    _if=lambda: proxy_started() or not answered,  # (re)started, or running but not answering (starting, hung)
)
