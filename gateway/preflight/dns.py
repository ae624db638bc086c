"""Forward and reverse DNS of every fleet host, with dnspython.

For each name: its A and AAAA records; for each address, its PTR record; and forward-confirmed
reverse DNS (the PTR name resolves back to the same address). A timeout or SERVFAIL is a
temporary failure and never reported as a mismatch. Hosts are looked up concurrently, so a dead
nameserver costs one timeout for the whole fleet, not one per host.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dns.exception
import dns.resolver
import dns.reversename

PASS = "pass"
NO_PTR = "no-ptr"
PTR_OTHER_HOST = "ptr-names-another-host"
FORWARD_MISMATCH = "forward-mismatch"
NXDOMAIN = "nxdomain"
NO_ADDRESS = "no-address"
TEMPFAIL = "temporary-failure"

FIXES = {
    NO_PTR: "add a PTR record for the address pointing at the host name",
    PTR_OTHER_HOST: "point the PTR record at this host name (or use the name the PTR gives)",
    FORWARD_MISMATCH: "make the PTR name's A/AAAA record hold this address",
    NXDOMAIN: "create an A (or AAAA) record for the name, or fix the name in the inventory",
    NO_ADDRESS: "give the name an A or AAAA record",
    TEMPFAIL: "check that the nameserver is reachable and answers; then run the check again",
}


@dataclass(frozen=True)
class DnsResult:
    host: str
    address: str | None
    status: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == PASS

    @property
    def fix(self) -> str:
        return FIXES.get(self.status, "")


class _TempFail(Exception):
    pass


def make_resolver(nameservers: Sequence[str] | None, timeout: float) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = list(nameservers)
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


def _query(resolver: dns.resolver.Resolver, name, rdtype: str) -> list[str] | None:
    """Records as text; [] when the name has none of this type; None when the name does not exist."""
    try:
        answer = resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN:
        return None
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.YXDOMAIN) as error:
        raise _TempFail(f"{rdtype} {name}: {type(error).__name__}: {error}") from error
    if answer.rrset is None:
        return []
    return [record.to_text() for record in answer.rrset]


def _same_name(a: str, b: str) -> bool:
    return a.rstrip(".").lower() == b.rstrip(".").lower()


def _check_address(resolver: dns.resolver.Resolver, host: str, address: str) -> DnsResult:
    ptr = _query(resolver, dns.reversename.from_address(address), "PTR")
    if not ptr:
        return DnsResult(host, address, NO_PTR, f"{address} has no PTR record")
    names = [p.rstrip(".") for p in ptr]
    ours = next((n for n in names if _same_name(n, host)), None)
    target = ours or names[0]
    family = "AAAA" if ipaddress.ip_address(address).version == 6 else "A"
    forward = _query(resolver, target, family) or []
    if address not in [ipaddress.ip_address(f).compressed for f in forward]:
        shown = ", ".join(forward) if forward else "nothing"
        return DnsResult(host, address, FORWARD_MISMATCH,
                         f"PTR {address} -> {target}, but {target} resolves to {shown}")
    if ours is None:
        return DnsResult(host, address, PTR_OTHER_HOST, f"PTR {address} -> {target}, not {host}")
    return DnsResult(host, address, PASS, f"{host} <-> {address}")


def check_host(resolver: dns.resolver.Resolver, host: str) -> list[DnsResult]:
    try:
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            ptr = _query(resolver, dns.reversename.from_address(host), "PTR")
            if not ptr:
                return [DnsResult(host, host, NO_PTR, f"{host} has no PTR record")]
            return [_check_address(resolver, ptr[0].rstrip("."), host)]
        a = _query(resolver, host, "A")
        if a is None:
            return [DnsResult(host, None, NXDOMAIN, f"{host} does not exist (NXDOMAIN)")]
        aaaa = _query(resolver, host, "AAAA") or []
        if not a and not aaaa:
            return [DnsResult(host, None, NO_ADDRESS, f"{host} exists but has no A or AAAA record")]
        return [_check_address(resolver, host, address) for address in a + aaaa]
    except _TempFail as error:
        return [DnsResult(host, None, TEMPFAIL, str(error))]


def check_fleet(hosts: Sequence[str], nameservers: Sequence[str] | None = None,
                timeout: float = 3.0) -> list[DnsResult]:
    """Check every host at once; results in the order of `hosts`."""
    unique = list(dict.fromkeys(hosts))
    if not unique:
        return []
    resolver = make_resolver(nameservers, timeout)
    with ThreadPoolExecutor(max_workers=min(32, len(unique))) as pool:
        per_host = list(pool.map(lambda h: check_host(resolver, h), unique))
    return [result for results in per_host for result in results]


def resolver_function(nameservers: Sequence[str] | None, timeout: float):
    """name -> first address, asking the given nameservers (None: the system's own lookup)."""
    if not nameservers:
        return lambda name: name
    resolver = make_resolver(nameservers, timeout)

    def resolve(name: str) -> str:
        try:
            return ipaddress.ip_address(name).compressed
        except ValueError:
            pass
        for rdtype in ("A", "AAAA"):
            try:
                records = _query(resolver, name, rdtype)
            except _TempFail as error:
                raise OSError(f"cannot resolve {name}: {error}") from None
            if records:
                return records[0]
        raise OSError(f"{name} has no address in DNS ({', '.join(nameservers)})")

    return resolve
