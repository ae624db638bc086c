"""Preflight of a whole fleet: settings, DNS and backends, as one report with one exit code.

Used by the deploy (its first phase: any failure stops the run before a host is changed) and
by `python -m checks` (on its own, changing nothing).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway import tls
from gateway.inventory import is_gateway
from gateway.lock import read_lock
from gateway.preflight import backends as backend_checks
from gateway.preflight import dns as dns_checks
from gateway.settings import Settings, SettingsError, load
from gateway.table import table

# Exit status bits: OR-ed together, so one number tells every class of failure apart.
EXIT_OK = 0
EXIT_SETTINGS = 2
EXIT_DNS = 4
EXIT_DNS_TEMPORARY = 8
EXIT_BACKENDS = 16


@dataclass
class Report:
    settings_problems: dict[str, list[str]] = field(default_factory=dict)
    dns: list[dns_checks.DnsResult] = field(default_factory=list)
    backends: list[backend_checks.BackendResult] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)

    @property
    def exit_code(self) -> int:
        code = EXIT_OK
        if self.settings_problems:
            code |= EXIT_SETTINGS
        if any(r.status == dns_checks.TEMPFAIL for r in self.dns):
            code |= EXIT_DNS_TEMPORARY
        if any(not r.ok and r.status != dns_checks.TEMPFAIL for r in self.dns):
            code |= EXIT_DNS
        if any(not r.ok for r in self.backends):
            code |= EXIT_BACKENDS
        return code

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(host, check, result, detail and fix) for every check, failures first within a class."""
        rows = []
        for host, problems in self.settings_problems.items():
            rows += [(host, "settings", "FAIL", problem) for problem in problems]
        for r in self.dns:
            detail = r.detail if r.ok else f"{r.detail}; fix: {r.fix}"
            rows.append((r.host, "dns", "pass" if r.ok else r.status.upper(), detail))
        for r in self.backends:
            detail = r.detail if r.ok else f"{r.detail}; fix: {r.fix}"
            rows.append((r.backend, f"backend {r.check}", "pass" if r.ok else "FAIL", detail))
        for name in sorted(self.skipped):
            rows.append(("*", name, "SKIPPED",
                         f"!!! {name} checks were skipped on purpose: their failures are not known"))
        return rows

    def table(self) -> str:
        verdict = "preflight passed" if self.ok else f"preflight FAILED (exit status {self.exit_code})"
        return table(("HOST", "CHECK", "RESULT", "DETAIL"), self.rows()) + "\n" + verdict

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "exit_code": self.exit_code,
                "settings": self.settings_problems,
                "dns": [asdict(r) | {"fix": r.fix} for r in self.dns],
                "backends": [asdict(r) for r in self.backends],
                "skipped": sorted(self.skipped),
            },
            indent=2,
        )


def run(fleet: Mapping[str, Settings], skip: set[str] | frozenset[str] = frozenset()) -> Report:
    """Check a fleet whose settings already loaded; `skip` adds to what each host's settings skip."""
    report = Report()
    if not fleet:
        return report
    first = next(iter(fleet.values()))
    report.skipped = set(skip) | {name for s in fleet.values() for name in s.preflight_skip}
    backends = list({b.name: b for s in fleet.values() for b in s.backends}.values())
    models = list({m.name: m for s in fleet.values() for m in s.models}.values())
    if "dns" not in report.skipped:
        names = list(fleet) + [b.address for b in backends]
        report.dns = dns_checks.check_fleet(names, first.dns_nameservers, first.preflight_timeout)
    if "backends" not in report.skipped:
        resolve = dns_checks.resolver_function(first.dns_nameservers, first.preflight_timeout)
        report.backends = backend_checks.check_backends(backends, models, first.preflight_timeout, resolve)
    return report


def run_for_data(host_data: Mapping[str, Mapping[str, Any]], skip: set[str] | frozenset[str] = frozenset()) -> Report:
    """Load every gateway's settings (of all the inventory's hosts: a monitoring host is not judged
    as a gateway), then check the fleet; settings problems stop the other checks."""
    fleet: dict[str, Settings] = {}
    problems: dict[str, list[str]] = {}
    for name, data in host_data.items():
        if not is_gateway(data):
            continue
        try:
            fleet[name] = load(data)
        except SettingsError as error:
            problems[name] = error.problems
            continue
        _, lock_problem = read_lock(fleet[name].requirements)
        if lock_problem:
            problems[name] = [f"litellm_version/litellm_extra_requirements: {lock_problem}"]
        tls_problem = tls.problem(fleet[name], name)
        if tls_problem:
            problems.setdefault(name, []).append(tls_problem)
    if problems:
        return Report(settings_problems=problems)
    return run(fleet, skip)
