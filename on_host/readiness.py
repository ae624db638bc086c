"""The one readiness probe of the gateway: does the proxy answer /health/readiness as healthy?

The deploy asks it before changing anything and while verifying, `fab status` and the smoke check
ask it too, so "ready" means the same thing everywhere. /health/readiness needs no key and calls
no model (unlike /health, which loads every model on the backends).

`python3 -m on_host.readiness URL [--wait SECONDS]`: exit 0 when ready, 1 when not; one line says why.
"""
from __future__ import annotations

import argparse
import json
import ssl
import sys
import urllib.error
import urllib.request

from .deadline import wait_until

PATH = "/health/readiness"
READY = ("healthy", "connected")


def pin_argument(parser: argparse.ArgumentParser) -> None:
    """`--tls-pin FILE` of every check that may reach the front over HTTPS (give it to trust_pinned)."""
    parser.add_argument("--tls-pin", help="certificate chain whose leaf an https URL must present (the front's own)")


def trust_pinned(cert_file: str | None) -> None:
    """HTTPS to this host's own front, which the checks reach by address: trust exactly the leaf
    certificate it serves (the first of the chain the deploy installed beside it), whatever names it
    holds; not the CA that issued it, which may have issued others. None: plain HTTP, nothing to do."""
    if cert_file is None:
        return
    with open(cert_file, encoding="ascii") as handle:
        chain = handle.read()
    end = "-----END CERTIFICATE-----"
    leaf = chain[chain.index("-----BEGIN CERTIFICATE-----"):chain.index(end) + len(end)]
    context = ssl.create_default_context(cadata=leaf)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a leaf alone as the trust anchor
    urllib.request.install_opener(urllib.request.build_opener(urllib.request.HTTPSHandler(context=context)))


def probe(base_url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """(ready, what it answered): one request, never raises."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + PATH, timeout=timeout) as response:
            status = json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return False, f"HTTP {error.code}"
    except (OSError, ValueError) as error:
        return False, f"error: {getattr(error, 'reason', None) or error}"
    answer = status.get("status", "?") if isinstance(status, dict) else repr(status)
    return answer in READY, str(answer)


def wait_ready(base_url: str, timeout: float, interval: float = 1.0) -> tuple[bool, str]:
    """Probe until ready or `timeout` seconds passed: (ready, the last answer)."""
    _, (ready, answer) = wait_until(lambda: probe(base_url, timeout=min(5.0, max(timeout, 1.0))), timeout, interval,
                                    good=lambda probed: probed[0])
    return ready, answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m on_host.readiness", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the proxy's base URL, e.g. http://127.0.0.1:4000")
    parser.add_argument("--wait", type=float, default=0, help="seconds to keep asking (default: ask once)")
    pin_argument(parser)
    args = parser.parse_args(argv)
    trust_pinned(args.tls_pin)
    ready, answer = wait_ready(args.url, args.wait) if args.wait else probe(args.url)
    print(("ready: " if ready else "not ready: ") + answer)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
