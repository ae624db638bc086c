"""The gateway itself: the release, the managed files, then each service (gateway/services/) as a
change of its files asks: rate-limit Redis and Sentinel restarted, the front reloaded, the proxy
switched over, the fleet's address reloaded.

Every file comes from one table (gateway/services/registry.py) and is compared against one snapshot of them
all (ManagedFiles), taken once while preparing. The proxy is never restarted in place: when its
release or anything it reads changed, or nothing serves, the idle instance is started on the
wanted release and takes the traffic only once it answered (gateway/verify.py: switch_over). A
changed config or auth hook is checked by the release's LiteLLM before it replaces the live one.
"""
from pyinfra import host
from pyinfra.facts.hardware import Cpus
from pyinfra.operations import files, python, server, systemd
from pyinfra.operations.util import any_changed

from gateway.commands import front_trust
from gateway.facts import Instances, ManagedFiles, ProxyAnswers
from gateway.lock import lock_path, read_lock, release_dir
from gateway.operations import pinned_virtualenv, secret_env_file, whole_file
from gateway.service_ops import apply_change, enabled_and_running, unit_read
from gateway.services import proxy, registry
from gateway.services.base import Change, Service
from gateway.services.proxy import validate_command
from gateway.services.registry import by_name, managed_files
from gateway.settings import for_host
from gateway.verify import switch_over, verify_gateway

s = for_host(host).resolved(host.get_fact(Cpus) or 1)
table = managed_files(s, host.name)
# Files of a feature turned off since an earlier deploy are looked for too (removed below): the
# certificate and key with TLS off, the fleet's address outside a fleet, the scrape token's digest
# with metrics off.
retired = registry.retired(s)
present = host.get_fact(ManagedFiles, paths=tuple(f.path for f in table if not f.secret)
                        + tuple(path for gone in retired for path in gone.paths))
answered = host.get_fact(ProxyAnswers, url=s.local_url, trust=front_trust(s))  # before this run changed anything
instances = host.get_fact(Instances, ports=s.instance_ports, slots_dir=s.slots_dir,
                          legacy_unit=proxy.LEGACY_UNIT, venv_dir=s.venv_dir, inputs=proxy.read_at_start(s))

lock, _ = read_lock(s.requirements)  # the preflight refused a run without it
release = release_dir(s)
venv = pinned_virtualenv(
    name=f"Release {release} holds exactly the packages of {lock_path(s.requirements).name} (hash-checked), "
         "installed beside the serving one, "
         f"{'from ' + s.pip_index_url if s.pip_index_url else 'from the wheels this machine sent (no index)'}",
    path=release,
    requirements=lock,
    wheel_cache=s.wheel_cache,
    index_url=s.pip_index_url,
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


def files_of(service: Service) -> list:
    """The service's files other than its unit: their operations, whose change it must see."""
    return [installed[f.name] for f in table if service.unit in f.restarts and f.name != service.unit]


def switch_over_proxy() -> None:
    """The proxy's change: the idle instance starts on the wanted release and files, takes the traffic
    once it answers (gateway/verify.py)."""
    server.shell(
        name=f"The new release accepts {s.config_dir}/config.yaml (--validate_config)",
        commands=[validate_command(s, by_name(table)["config.yaml"].path)],
        # A changed config was checked when staged; this is for the same config under new code.
        _if=lambda: venv.did_change() and not installed["config.yaml"].did_change(),
    )
    python.call(
        name=f"Traffic is on an instance of {release.rsplit('/', 1)[1]} with these files: switched over "
             "once the new instance answered, the old one drained",
        function=switch_over,
        settings=s,
        release=release,
        why="deploy",
        inputs=proxy.read_at_start(s),
        # A fleet gateway that serves changes in its turn, drained from the fleet; a first start does not wait.
        roll=bool(s.fleet) and instances["serving"] is not None,
        _if=lambda: due or changed(),
    )


# Nothing serves, not this release, or not the files on disk: a switch is due whatever changes this run.
due = instances["serving"] is None or instances["serving_release"] != release or instances["stale"]
changed = any_changed(installed[proxy.SERVICE.unit], *files_of(proxy.SERVICE), venv)
hosted = registry.on_host(s)
for service in hosted:
    unit_read(service, installed[service.unit])
    if service.change is Change.SWITCH_OVER:
        switch_over_proxy()
    else:
        apply_change(service, installed[service.unit], files_of(service))
    # Enabled and running: the proxy's instances are the switch-over's; a service another one
    # starts is checked after that one.
    if service.change is not Change.SWITCH_OVER and not service.started_by:
        enabled_and_running(service)
    for started in (other for other in hosted if other.started_by == service.unit):
        enabled_and_running(started)

for gone in retired:
    if any(present.get(path) for path in gone.paths):
        server.shell(name=gone.wanted, commands=list(gone.commands))

if instances["legacy_unit"]:
    files.file(name=f"The unit of before the front, {proxy.LEGACY_UNIT}, is gone",
               path=f"/etc/systemd/system/{proxy.LEGACY_UNIT}", present=False)
    systemd.daemon_reload(name=f"systemd has forgotten {proxy.LEGACY_UNIT}")
if instances["legacy_venv"]:
    server.shell(
        name=f"The virtualenv of before the releases, in {s.venv_dir} itself, is gone",
        commands=[f"cd {s.venv_dir} && rm -rf bin include lib lib64 share pyvenv.cfg requirements.txt"],
    )

python.call(
    name="The gateway answers: ready, exactly the configured models, one chat completion",
    function=verify_gateway,
    settings=s,
    _if=lambda: not answered and not (due or changed()),  # running but not answering (starting, hung)
)
