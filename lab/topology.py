"""What the lab consists of: its hosts, their loopback addresses, names and models.

All lab traffic stays on loopback: the classic hosts share this machine's network namespace and
bind their services to an address of their own in 127.0.10.0/24. Fleet hosts each live in a network
namespace of their own on a bridged 127.1.0.0/16 (lab/network.py), so a floating address can move
between them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR = Path("/var/lib/litellm-lab")
CACHE_DIR = Path("/var/cache/litellm-lab")
PIP_CACHE_DIR = Path("/root/.cache/pip")
DOMAIN = "lab.test"
DNS_ADDRESS = "127.0.10.53"
OLLAMA_PORT = 11434
GATEWAY_PORT = 4000
DEBIAN_SUITE = "bookworm"

# The fleet's network: 127.1.0.0/16 on a bridge; hosts 127.1.0.1-30, the floating address, and the
# root namespace's end (the control machine: route to the lab's DNS and backends, package proxy).
FLEET_VIP = "127.1.0.100"
FLEET_PREFIX = 16
FLEET_NAME = "gateway"  # gateway.lab.test: the fleet's floating address
CONTROL_ADDRESS = "127.1.0.254"
PACKAGE_PROXY_PORT = 3128

# The seed's five models, as Ollama tags; then a vision model and an embedding model.
MODELS: dict[str, dict] = {
    "phi3-3.8b": {"tag": "phi3:3.8b-mini-128k-instruct-q8_0", "context_window": 2048},
    "llama3-8b": {"tag": "llama3:8b", "context_window": 2048},
    "llama3.1-8b": {"tag": "llama3.1:8b", "context_window": 2048},
    "mistral-7b": {"tag": "mistral:7b", "context_window": 2048},
    "gemma2-9b": {"tag": "gemma2:9b", "context_window": 2048},
    "llava-7b": {"tag": "llava:7b", "context_window": 2048, "vision": True},
    "nomic-embed-text": {"tag": "nomic-embed-text:latest", "mode": "embedding", "context_window": 8192},
}


@dataclass(frozen=True)
class LabHost:
    name: str
    role: str  # "gateway", "backend" or "monitoring"
    address: str
    models: tuple[str, ...] = field(default=())  # public model names a backend serves
    suite: str = DEBIAN_SUITE  # the Debian release its root file system is built from
    namespace: str | None = None  # a network namespace of its own (fleet hosts); None: the root one

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{DOMAIN}"

    @property
    def root(self) -> Path:
        return STATE_DIR / "hosts" / self.name / "root"

    @property
    def console_log(self) -> Path:
        return STATE_DIR / "hosts" / self.name / "console.log"

    @property
    def pid_file(self) -> Path:
        return STATE_DIR / "hosts" / self.name / "nspawn.pid"

    @property
    def tags(self) -> list[str]:
        return [MODELS[m]["tag"] for m in self.models]


BACKENDS = (
    LabHost("llm1", "backend", "127.0.10.21",
            ("phi3-3.8b", "llama3-8b", "llama3.1-8b", "llava-7b", "nomic-embed-text")),
    LabHost("llm2", "backend", "127.0.10.22", ("phi3-3.8b", "mistral-7b", "gemma2-9b", "nomic-embed-text")),
)
# The same two backends again for the gateways whose tests run beside the others (the fleet's, the
# benchmark's): the faults those tests put into llm1 and llm2, and the calls they count there, stay theirs.
SIDE_BACKENDS = (
    LabHost("llm3", "backend", "127.0.10.23", BACKENDS[0].models),
    LabHost("llm4", "backend", "127.0.10.24", BACKENDS[1].models),
)


def gateway(index: int) -> LabHost:
    """Gateway number `index` (1-based): gw1 is the README's, others serve tests and benchmarks."""
    if not 1 <= index <= 30:
        raise ValueError(f"gateway index {index} is outside 1..30")
    return LabHost(f"gw{index}", "gateway", f"127.0.10.{100 + index}")


def fleet_gateway(index: int) -> LabHost:
    """Fleet gateway number `index` (1-based), in network namespace lab-fleet<index>."""
    if not 1 <= index <= 30:
        raise ValueError(f"fleet index {index} is outside 1..30")
    return LabHost(f"fleet{index}", "gateway", f"127.1.0.{index}", namespace=f"lab-fleet{index}")


def fleet_hosts(count: int) -> list[LabHost]:
    return [fleet_gateway(i) for i in range(1, count + 1)]


# Debian 13 (Python 3.13): the closest second target to Ubuntu 24.04 that this machine can build,
# proving the deploy does not assume one Python version.
TRIXIE_GATEWAY = LabHost("trixie1", "gateway", "127.0.10.131", suite="trixie")


# The monitoring host (Prometheus, Alertmanager, blackbox exporter), in the root namespace: it reaches
# the classic hosts on loopback and the fleet through lab-root. Its alerts go to the lab's alert sink,
# a webhook receiver on the control machine (lab/alert_sink.py).
MONITORING_HOST = LabHost("mon1", "monitoring", "127.0.10.90")
ALERT_SINK_ADDRESS = "127.0.10.91"
ALERT_SINK_PORT = 9099

TEST_GATEWAY = gateway(2)  # gw1 is the README's; the tests rebuild gw2 from scratch every session
BENCH_GATEWAYS = [gateway(i) for i in range(3, 7)]  # gw3..gw6: the benchmark's own hosts
# Every host beyond the configured lab that the tests and benchmarks build. The lab's DNS serves
# their names from the start: building one later never restarts it under another test's traffic.
PLANNED_HOSTS = (TEST_GATEWAY, *BENCH_GATEWAYS, TRIXIE_GATEWAY, *fleet_hosts(3), *SIDE_BACKENDS, MONITORING_HOST)


def backends_of(gateways: Sequence[LabHost]) -> tuple[LabHost, ...]:
    """The backends these gateways are deployed with: SIDE_BACKENDS for the fleet, benchmark and Debian 13
    gateways, whose tests run beside gw2's (`./run test`: two processes) while those slow or stop llm1, llm2."""
    side = {bool(h.namespace) or h in BENCH_GATEWAYS or h == TRIXIE_GATEWAY for h in gateways}
    if len(side) > 1:
        raise ValueError("fleet or benchmark gateways and other gateways serve different lab backends: "
                         "deploy them apart")
    return SIDE_BACKENDS if side == {True} else BACKENDS


def hosts(gateways: int = 1) -> list[LabHost]:
    return [gateway(i) for i in range(1, gateways + 1)] + list(BACKENDS)


def by_name(name: str) -> LabHost:
    if name.startswith("gw") and name[2:].isdigit():
        return gateway(int(name[2:]))
    if name.startswith("fleet") and name[5:].isdigit():
        return fleet_gateway(int(name[5:]))
    for host in (*BACKENDS, *SIDE_BACKENDS, TRIXIE_GATEWAY, MONITORING_HOST):
        if host.name == name:
            return host
    raise KeyError(f"no lab host named {name!r}")
