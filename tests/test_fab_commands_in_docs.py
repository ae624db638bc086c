"""Every `fab ...` command the README, the docs and the alerts' texts show parses as fab parses it
(task names and flags), and `fab logs --since` takes the durations the alerts' runbook uses. Each
one also runs as written in the lab (tests/lab/test_fabfile.py), placeholders filled in."""
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


# What a reader puts for each placeholder the docs use.
PLACEHOLDERS = {"T": "alpha", "N": "120", "TASK": "logs", "GATEWAY": "gw1"}


def shown_commands(with_placeholders: bool = False) -> list[str]:
    """`fab TASK ...` inside backticks, as written; those with placeholders (capitals such as
    `--team T`, optional parts in brackets) only when asked. Never a pattern such as `fab keys.*`."""
    found = []
    for source in SOURCES:
        for command in re.findall(r"`(fab [^`]+)`", source.read_text()):
            placeholders = re.search(r"\b[A-Z]+\b|\[", command)
            if not re.search(r"\.\.\.|\||<|\*", command) and (with_placeholders or not placeholders):
                found.append(command)
    return sorted(set(found))


def runnable_commands() -> list[str]:
    """Every shown command, placeholders included, but a task named in a sentence without the
    arguments it needs ("then `fab undrain`"; the docs show it whole elsewhere), and a synopsis
    (`fab keys.limits --team T [--rpm ...]`) where the docs also show that task typed out."""
    shown = shown_commands(with_placeholders=True)
    typed_out = {c.split()[1] for c in shown if "[" not in c}
    return [c for c in shown if parse_error(c) is None and not ("[" in c and c.split()[1] in typed_out)]


def parse_error(command: str) -> str | None:
    """What fab's parser says of the command as typed, or None when it takes it."""
    tasks = Collection.from_module(fabfile)
    argv = as_typed(command)[1:]
    if argv[:1] == ["--help"] and len(argv) == 2:  # fab itself reads the task name that follows
        return None if argv[1] in tasks.task_names else f"no task {argv[1]!r}"
    parser = Parser(initial=ParserContext(args=program.core_args()), contexts=tasks.to_contexts())
    try:
        parser.parse_argv(argv)
    except ParseError as error:
        return str(error)
    return None


def as_typed(command: str, values: dict[str, str] = PLACEHOLDERS) -> list[str]:
    """The command as a reader types it: optional parts ([...]) left out, each placeholder (a word
    in capitals) given its value; argv, `fab` first."""
    command = re.sub(r"\s*\[[^\]]*\]", "", command)
    words = shlex.split(command)
    missing = [w for w in words if re.fullmatch(r"[A-Z]+", w) and w not in values]
    assert not missing, f"{command!r}: no value for {missing}"
    return [values.get(word, word) for word in words]


def test_the_docs_show_fab_commands():
    assert len(shown_commands()) >= 10 and "fab logs --since 15m" in shown_commands()


@pytest.mark.parametrize("command", shown_commands(with_placeholders=True))
def test_each_fab_command_the_docs_show_parses(command):
    error = parse_error(command)
    # A task named in a sentence without its arguments ("then `fab undrain`") is still a real task.
    assert error is None or "did not receive required positional arguments" in error, f"{command!r}: {error}"


def test_a_shown_command_is_typed_with_its_placeholders_filled_and_its_options_left_out():
    assert as_typed("fab keys.limits --team T [--rpm --max-tokens]", {"T": "alpha"}) == \
        ["fab", "keys.limits", "--team", "alpha"]
    assert "fab undrain" not in runnable_commands() and "fab undrain GATEWAY" in runnable_commands()
    assert "fab logs" in runnable_commands()  # shown alone, and complete alone
    assert "fab keys.limits --team T --rpm N" in runnable_commands()
    assert not any(c.startswith("fab keys.limits --team T [") for c in runnable_commands())
    assert "fab keys.create --team T" in runnable_commands()  # typed out in the recipes, so the synopsis is left
    assert not any(c.startswith("fab keys.create --team T [") for c in runnable_commands())
    assert "fab keys.limits --team T --rpm N" in shown_commands(with_placeholders=True)
    assert "fab keys.limits --team T --rpm N" not in shown_commands()


def test_since_takes_a_duration_as_that_long_ago():
    assert [journal_since(s) for s in ("15m", "2h", "1d", "yesterday", "2025-09-16 10:00")] == \
        ["-15m", "-2h", "-1d", "yesterday", "2025-09-16 10:00"]
