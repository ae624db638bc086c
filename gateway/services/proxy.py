"""The proxy instances: two LiteLLM instances (litellm@PORT.service on loopback) that take turns
behind the front. A change of anything they read at start is a switch-over: the idle instance
starts on it and takes the traffic only once it answered (on_host/switch.py)."""
from __future__ import annotations

import hashlib
import shlex

from gateway.lock import release_dir
from gateway.services.base import Change, ManagedFile, Retired, Rows, Service, shipped, unit_path
from gateway.services.host import HOST_LIB, installed_path, unit_command
from gateway.settings import Settings

INSTANCE_TEMPLATE = "litellm@.service"
SERVICE = Service(INSTANCE_TEMPLATE, "the proxy instances (LiteLLM)", Change.SWITCH_OVER)
# The unit every gateway ran before the front existed: stopped and removed when the front takes its port.
LEGACY_UNIT = "litellm.service"
# The proxy imports these (the auth hook imports ollama_fit.py, release_fixes.py and residency.py).
IN_PROXY_SOURCES = ("in_proxy/__init__.py", "in_proxy/log_limits.py", "in_proxy/ollama_fit.py",
                    "in_proxy/release_fixes.py", "in_proxy/residency.py", "in_proxy/serve.py")

# What config.yaml names in the hook (templates/config.yaml.j2): the check below asks for exactly these.
HOOK_MODULE, HOOK_AUTH, HOOK_LIMITS = "gateway_auth", "user_api_key_auth", "request_limits"
# The env variable the hook reads the previous master key's SHA-256 from, while a rotation rolls.
HOOK = {"module": HOOK_MODULE, "auth": HOOK_AUTH, "limits": HOOK_LIMITS,
        "previous_key_var": "LITELLM_PREVIOUS_MASTER_KEY_SHA256"}
AUTH_HOOK = f"{HOOK_MODULE}.py"
LOGGING, CONFIG = "logging.json", "config.yaml"  # in the config directory
_HOOK_CHECK = (
    "import importlib.machinery, importlib.util, sys\n"
    f"loader = importlib.machinery.SourceFileLoader({HOOK_MODULE!r}, sys.argv[1])\n"
    "spec = importlib.util.spec_from_loader(loader.name, loader)\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "loader.exec_module(module)\n"
    f"missing = [name for name in ({HOOK_AUTH!r}, {HOOK_LIMITS!r}) if not hasattr(module, name)]\n"
    "if missing:\n"
    "    sys.exit(f'LiteLLM: auth hook refused: it does not define {missing}')\n"
    "print('LiteLLM: auth hook OK')\n"
)


def instance_unit(port: int) -> str:
    return INSTANCE_TEMPLATE.replace("@", f"@{port}")


def instance_host(s: Settings) -> str:
    """The instances' address as a URL names it."""
    return f"[{s.instance_address}]" if ":" in s.instance_address else s.instance_address


def server(port: int) -> str:
    """The instance's name in the front's backend."""
    return f"i{port}"


def validate_command(settings: Settings, config_path: str, release: str | None = None) -> str:
    """A LiteLLM release's own check of a config file, offline (no cost-map download); by default
    the release of the settings' lock, which the deploy installs before any file."""
    # The hook imports its modules from where the proxy's PYTHONPATH finds them (in_proxy/ below HOST_LIB).
    return (f"LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONPATH={HOST_LIB} {release or release_dir(settings)}/bin/litellm "
            f"--config {shlex.quote(config_path)} --validate_config")


def hook_check_command(settings: Settings, hook_path: str) -> str:
    """The release's Python loads the auth hook as the proxy would and finds what config.yaml names."""
    return (f"cd {shlex.quote(settings.config_dir)} && LITELLM_LOCAL_MODEL_COST_MAP=True PYTHONPATH={HOST_LIB} "
            f"{release_dir(settings)}/bin/python -c {shlex.quote(_HOOK_CHECK)} {shlex.quote(hook_path)} 2>&1")


def rows(r: Rows) -> list[ManagedFile]:
    """What the instances read at start."""
    s, unit = r.s, (SERVICE.unit,)
    env_source, env = r.template("litellm.env.j2")
    return [
        # The proxy's entry point and its logging filter (logging.json), beside on_host/ on its PYTHONPATH.
        *(r.system(installed_path(source), *shipped(source), "is installed for the proxy's start and logging",
                   restarts=unit) for source in IN_PROXY_SOURCES),
        r.readable(LOGGING, *r.template("logging.json.j2"),
                   f"sends the proxy's log to the journal and {s.log_dir}/proxy.log", restarts=unit),
        # Checked by the installed LiteLLM's Python before it replaces the live hook.
        r.readable(AUTH_HOOK, *shipped(f"in_proxy/{AUTH_HOOK}"), "lets the master key and team keys in, any other key "
                   "gets 401", validate=hook_check_command(s, "{path}"), restarts=unit),
        # Staged and checked by the installed LiteLLM before it replaces the config in place: a
        # config it refuses never reaches the disk the service (or its next restart) reads.
        r.readable(CONFIG, *r.template("config.yaml.j2"),
                   "holds the rendered model list and router settings, accepted by LiteLLM",
                   validate=validate_command(s, "{path}"), restarts=unit),
        ManagedFile(s.env_file, env_source, "root", "root", "600", "holds the master key and runtime settings",
                    env.encode(), secret=True, restarts=unit),
        r.unit(SERVICE),
    ]


def read_at_start(s: Settings) -> tuple[str, ...]:
    """The files an instance reads at start: what its unit records as each start begins and what
    the deploy compares with that record (the rows above marked to restart it, as
    tests/test_services.py holds)."""
    return (*(installed_path(source) for source in IN_PROXY_SOURCES),
            *(f"{s.config_dir}/{name}" for name in (LOGGING, AUTH_HOOK, CONFIG)), s.env_file, unit_path(SERVICE))


def started_with(s: Settings) -> str:
    """The unit's ExecStartPre: each start records the digest of what it reads (on_host/started_with.py)."""
    return unit_command("started_with", f"{s.slots_dir}/%i", *read_at_start(s))


def retired(s: Settings) -> list[Retired]:
    return []


def context(s: Settings) -> dict[str, object]:
    previous = s.previous_master_key
    return {"hook": HOOK, "previous_key_sha256": hashlib.sha256(previous.encode()).hexdigest() if previous else None,
            "started_with": started_with(s)}


def layout(s: Settings) -> dict[str, object]:
    """The instances, their units and slots, and the releases, as the host-side scripts are told."""
    return {
        "instances": {str(port): {"unit": instance_unit(port), "server": server(port),
                                  "url": f"http://{instance_host(s)}:{port}",
                                  "slot": f"{s.slots_dir}/{port}"} for port in s.instance_ports},
        "releases_dir": s.releases_dir,
        "current_link": s.current_link,
        "legacy_unit": LEGACY_UNIT,
    }
