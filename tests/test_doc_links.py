"""Every relative link in README.md and docs/ leads somewhere: the file exists, and a ``#section`` is a heading of it.

docs/results.md linked to a docs/ablation.md that never existed (prose copied from docs/results/ into the page keeps
its links as written); this finds such a link wherever it is.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: docs/results/*.md are prose that ``fope report`` copies into docs/results.md as written: their links are the page's
#: (docs/results.md is checked, with the prose in it)
PAGES = sorted([ROOT / "README.md", *(path for path in (ROOT / "docs").rglob("*.md") if path.parent.name != "results")])
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens, ``-1``,
    ``-2`` ... on repeats."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def without_code(text: str) -> str:
    """``text`` without fenced blocks and indented code blocks (4 spaces, after a blank line or more code)."""
    lines, previous_code, previous_blank = [], False, True
    for line in FENCE.sub("", text).splitlines():
        code = line.startswith("    ") and (previous_blank or previous_code) and not line.lstrip().startswith("- ")
        lines.append("" if code else line)
        previous_code, previous_blank = code, not line.strip()
    return "\n".join(lines)


def relative_links(page: Path) -> list[str]:
    text = without_code(page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def broken_links(page: Path) -> list[str]:
    """Each relative link of ``page`` that leads nowhere, with why."""
    broken = []
    for target in relative_links(page):
        path, _, section = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no {linked}")
        elif section and linked.suffix == ".md" and section not in anchors(linked):
            broken.append(f"{target}: no heading #{section} in {linked}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = broken_links(page)
    assert not broken, "\n".join(broken)


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Two words\n\nSee [a](missing.md), [b](#two-words), [c](#nowhere), `[d](x.md)`.\n\n"
        "    c[h, j](n) = code\n"
    )
    assert relative_links(page) == ["missing.md", "#two-words", "#nowhere"]
    assert anchors(page) == {"title", "two-words"}
    assert broken_links(page) == [
        f"missing.md: no {tmp_path / 'missing.md'}",
        f"#nowhere: no heading #nowhere in {page}",
    ]
