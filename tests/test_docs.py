"""The README is short and leads into docs/; every link there points at a file that exists; the docs
speak to the product's users (no development history)."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_the_readme_is_short_and_links_every_page_of_the_docs():
    readme = (REPO / "README.md").read_text()
    assert readme.count("\n") <= 250
    assert "```mermaid" in readme
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in readme, page.name


def test_every_relative_link_points_at_a_file():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)}: {target}"


def test_the_docs_do_not_narrate_their_development():
    for page in PAGES:
        found = re.findall(r"\b(?:[Ss]ession|[Ii]ssue) \d+\b|before this change", page.read_text())
        assert not found, f"{page.relative_to(REPO)}: {found}"


def test_every_table_has_its_header_row_and_is_not_cut_by_a_blank_line():
    """A table row after a blank line starts a new table, which Markdown renders only with a
    header and a separator row: without them the rows show as text."""
    for page in PAGES:
        lines = page.read_text().splitlines()
        in_code = False
        for number, line in enumerate(lines):
            if line.startswith("```"):
                in_code = not in_code
            starts_table = line.startswith("|") and (number == 0 or not lines[number - 1].startswith("|"))
            if starts_table and not in_code:
                following = lines[number + 1] if number + 1 < len(lines) else ""
                assert re.match(r"^\|[\s:|-]*-[\s:|-]*$", following), \
                    f"{page.relative_to(REPO)}:{number + 1}: a table row with no header above it: {line[:60]}"
