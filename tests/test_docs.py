"""Docs a clone can follow: the README keeps its first screen (install and start; install and test), its
Contents point at sections and files that exist, no page points outside the repository (``../shared``), and
any range of ledger rows a page states is the ledger's."""

from __future__ import annotations

import json
import re

import pytest

from tests.helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_first_screen_is_the_two_commands():
    text = (REPO / "README.md").read_text("utf-8")
    first_block = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    commands = [line for line in first_block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].endswith(".venv/bin/sd35-mock") and "pip install" in commands[0]
    assert "pytest" in commands[1] and "'.[test]'" in commands[1]
    assert text.index(first_block) < text.index("## Contents") < text.index("## What this is")


def test_the_contents_point_at_sections_and_files_that_exist():
    text = (REPO / "README.md").read_text("utf-8")
    contents = text[text.index("## Contents"):text.index("## What this is")]
    anchors = re.findall(r"\]\(#([^)]+)\)", contents)
    headings = {slug(h) for h in re.findall(r"^## (.+)$", text, re.M)}
    assert anchors and set(anchors) <= headings, set(anchors) - headings
    files = re.findall(r"\]\(([^)#]+)\)", contents)
    assert files and all((REPO / f).is_file() for f in files), [f for f in files if not (REPO / f).is_file()]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_a_page_names_exists_in_the_repository(page):
    text = page.read_text("utf-8")
    assert "../shared" not in text and "/work/" not in text, f"{page.name} points outside the repository"
    named = set(re.findall(r"`((?:docs|bench|contracts|mockserver|client|tests)/[\w./-]+\.(?:md|json|py))`", text))
    named |= set(re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)\)", text))
    missing = [name for name in named if not ((REPO / name).exists() or (REPO / "docs" / name).exists())]
    assert not missing, f"{page.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_a_range_of_ledger_rows_is_the_ledgers(page):
    """A page that says "rows L01..L28" when there are 31 misleads: any such range must match the ledger."""
    ids = [row["id"] for row in json.loads((REPO / "contracts" / "ledger.json").read_text("utf-8"))["rows"]]
    for first, last in re.findall(r"\b(L\d\d)\s*(?:\.\.|–|-|to)\s*(L\d\d)\b", page.read_text("utf-8")):
        assert (first, last) == (ids[0], ids[-1]), f"{page.name} says {first}..{last}; the ledger has {ids[0]}..{ids[-1]}"


def test_the_range_check_catches_the_old_claim(tmp_path):
    """The check above can fail: the README's old sentence is caught."""
    ids = [row["id"] for row in json.loads((REPO / "contracts" / "ledger.json").read_text("utf-8"))["rows"]]
    found = re.findall(r"\b(L\d\d)\s*(?:\.\.|–|-|to)\s*(L\d\d)\b", "(rows L01..L28, each marked D documented")
    assert found == [("L01", "L28")] and found[0] != (ids[0], ids[-1])
