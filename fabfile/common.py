"""What every task shares: the fleet from the deploy's inventory, --only, and a verdict table."""
from __future__ import annotations

from fabric import Connection
from invoke.exceptions import Exit

from gateway.remote import Fleet, Gateway, Outcome, load_fleet
from gateway.settings import SettingsError
from gateway.table import table

ONLY_HELP = "comma-separated gateway names (or SSH addresses) to act on; default: every gateway"


def fleet_of(c) -> Fleet:
    try:
        return load_fleet(c.config.litellm.inventory)
    except SystemExit as refused:  # the inventory's own settings check
        raise Exit(str(refused.code), code=2) from None
    except (SettingsError, ValueError) as error:
        raise Exit(f"inventory: {error}", code=2) from None


def gateways_of(c, only: str) -> tuple[Fleet, list[Gateway]]:
    fleet = fleet_of(c)
    if isinstance(c, Connection) and not only:  # fab -H HOST: that host only
        only = c.original_host
    try:
        return fleet, fleet.select(only)
    except ValueError as error:
        raise Exit(str(error), code=2) from None


def verdicts(outcomes: list[Outcome], column: str, failed: str, message: str) -> None:
    """A table of per-gateway (ok, detail) outcomes; exit non-zero if any failed or was unreachable."""
    rows, bad = [], False
    for outcome in outcomes:
        ok, detail = outcome.value if not outcome.error else (False, outcome.error)
        bad |= not ok
        rows.append([outcome.host, "ok" if ok else failed, detail])
    print(table(("GATEWAY", column, "DETAIL"), rows))
    if bad:
        raise Exit(message, code=1)
