"""The docs' settings table, made from the settings' declarations (gateway.settings.DECLARED and
gateway.monitoring.DECLARED): `python -m gateway.settings_doc > docs/settings.md`. A fast test holds
docs/settings.md to what this prints, so the table cannot drift from the code."""
from __future__ import annotations

import json
from collections.abc import Iterable

from gateway import settings
from gateway.monitoring import settings as monitoring

HEADER = """# Settings

Every setting, its default and what it does, as the code declares them (`gateway/settings.py`,
`gateway/monitoring/settings.py`; this file is made from them by `python -m gateway.settings_doc`). Set them
as group or host data in the inventory; a deploy checks all of them before any host changes and
names each one that is wrong, with what would be right. A name with the prefix that is not in
these tables is refused as a typo.
"""


def _default(value: object) -> str:
    shown = json.dumps(value)
    return "none" if value is None else f"`{shown}`"


def table(title: str, declared: Iterable[settings.Setting]) -> str:
    rows = [f"## {title}", "", "| setting | default | |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {_default(s.default)} | {s.help.replace('|', '/')}{f'; {s.check}' if s.check else ''} |"
             for s in declared]
    return "\n".join(rows) + "\n"


def document() -> str:
    thresholds = ", ".join(f"`{name}` {value}" for name, value in monitoring.THRESHOLDS.items())
    return "\n".join([HEADER, table("Gateways (`litellm_`)", settings.DECLARED),
                      table("The monitoring host (`monitoring_`)", monitoring.DECLARED),
                      "`monitoring_thresholds` takes any of these keys; unset ones keep their default: "
                      f"{thresholds}.\n"])


if __name__ == "__main__":
    print(document(), end="")
