"""The command lines the deploy, its verification and the operator tasks run on a gateway host.

They all run these, so each lives here once. Code shipped to the hosts (on_host/) is run from
where the deploy installs it, with the host's own python3.
"""
from __future__ import annotations

import shlex

from gateway.services import front, proxy
from gateway.services.host import HOST_LIB
from gateway.services.registry import layout
from gateway.settings import Settings


def on_host(module: str, *arguments: str, lib: str = HOST_LIB) -> str:
    """Run on_host.MODULE with the host's python3; `arguments` are quoted here. Unbuffered (-u): a
    long step's lines (a switch-over's) reach the operator as the host prints them."""
    return " ".join([f"PYTHONPATH={lib}", "python3", "-u", "-m", f"on_host.{module}", *map(shlex.quote, arguments)])


def front_trust(settings: Settings) -> tuple[str, ...]:
    """How the host's own checks trust its front over HTTPS: the chain it serves, pinned (they reach
    it by address, which the certificate need not name). Nothing to add for plain HTTP."""
    return ("--tls-pin", front.TLS_CERT) if settings.tls else ()


def smoke_command(settings: Settings, url: str, ready_timeout: int) -> str:
    """The smoke check on the host: ready, exactly the configured models, one completion (with the
    first chat model by name; with no chat model, one embedding)."""
    expected = sorted({model.name for model, _ in settings.deployments})
    chat = sorted(m.name for m in settings.models if m.mode != "embedding")
    tried = ("--model", chat[0]) if chat else ("--embedding-model", expected[0])
    return on_host("smoke", "--url", url, "--key-env-file", settings.env_file,
                   "--ready-timeout", str(ready_timeout), *front_trust(settings), *tried, "--expect", *expected)


def serving_command(ports: tuple[int, ...]) -> str:
    """Prints the unit of the instance serving now, by the host's own rule (on_host/serving.py)."""
    return on_host("serving", *(proxy.instance_unit(port) for port in ports))


def status_command(settings: Settings) -> str:
    """What `fab status` asks of a host, as JSON (on_host/status.py)."""
    return on_host("status", "--url", settings.local_url, "--layout", layout(settings),
                   *front_trust(settings))


def fleet_member_command(settings: Settings, server: str, state: str, wait: float = 0) -> str:
    """Set gateway `server`'s state (drain, ready) in this host's front (on_host/fleet_member.py)."""
    return on_host("fleet_member", "--layout", layout(settings), "--server", server, "--state", state,
                   "--wait", str(wait))


def primary_command(settings: Settings, own: str, off: str, wait: float) -> str:
    """Ask this fleet gateway's sentinel to move the Redis primary off the gateway at `off` (on_host/primary.py)."""
    return on_host("primary", "--layout", layout(settings), "--address", own, "--off", off,
                   "--wait", str(wait))


def switch_command(settings: Settings, release: str, ready_timeout: int, why: str, inputs: tuple[str, ...] = (),
                   unless_serving: bool = False) -> str:
    """The switch-over on the host (on_host/switch.py): start the idle instance on `release` (a
    release directory, or `same` / `previous`: what serves now / what served before), let it take
    the traffic only once it answered a completion, then drain and stop the one serving.
    `unless_serving`: only ask whether the serving instance already runs `release` with `inputs` as
    they are on disk (exit 0) or a switch-over is due (exit 3); each start records its own inputs
    (on_host/started_with.py), so a switch-over itself needs none."""
    expected = sorted({model.name for model, _ in settings.deployments})
    return on_host("switch", "--layout", layout(settings), "--release", release, "--why", why,
                   "--key-env-file", settings.env_file, "--ready-timeout", str(ready_timeout),
                   "--drain-timeout", str(settings.drain_timeout), "--keep", str(settings.releases_keep),
                   *(["--unless-serving"] if unless_serving else []), "--inputs", *inputs, "--expect", *expected)


def readiness_command(url: str, lib: str = HOST_LIB, trust: tuple[str, ...] = (), wait: float = 0) -> str:
    """Exit 0 when the proxy at `url` answers ready now, or within `wait` seconds (on_host/readiness.py);
    `trust`: front_trust()."""
    return on_host("readiness", url, *trust, *(("--wait", f"{wait:g}") if wait else ()), lib=lib)
