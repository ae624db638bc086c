"""Every `fab ...` command the README, the docs and the alerts' texts show parses as fab parses it
(task names and flags), and `fab logs --since` takes the durations the alerts' runbook uses."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from fabric.main import program
from invoke import Collection
from invoke.exceptions import ParseError
from invoke.parser import Parser, ParserContext

import fabfile
from fabfile.gateways import journal_since

REPO = Path(__file__).resolve().parent.parent
SOURCES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "templates/alert-rules.yml.j2"]


def shown_commands() -> list[str]:
    """`fab TASK ...` inside backticks, as written (placeholders in capitals left out)."""
    found = []
    for source in SOURCES:
        for command in re.findall(r"`(fab [^`]+)`", source.read_text()):
            if not re.search(r"[A-Z]{3,}|\.\.\.|\[|\||<|\*", command):
                found.append(command)
    return sorted(set(found))


def test_the_docs_show_fab_commands():
    assert len(shown_commands()) >= 10 and "fab logs --since 15m" in shown_commands()


@pytest.mark.parametrize("command", shown_commands())
def test_each_fab_command_the_docs_show_parses(command):
    parser = Parser(initial=ParserContext(args=program.core_args()),
                    contexts=Collection.from_module(fabfile).to_contexts())
    try:
        parser.parse_argv(shlex.split(command)[1:])
    except ParseError as error:
        # A task named in a sentence without its arguments ("then `fab undrain`") is still a real task.
        if "did not receive required positional arguments" not in str(error):
            pytest.fail(f"{command!r}: {error}")


def test_since_takes_a_duration_as_that_long_ago():
    assert [journal_since(s) for s in ("15m", "2h", "1d", "yesterday", "2025-09-16 10:00")] == \
        ["-15m", "-2h", "-1d", "yesterday", "2025-09-16 10:00"]
