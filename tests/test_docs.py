"""The README and docs/ hold together: every relative link leads to a file that exists, and to a
heading of it when it names one."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def anchors(document: Path) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces to
    hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", document.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def relative_links(document: Path) -> list[str]:
    text = FENCE.sub("", document.read_text())
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_the_docs_map_names_every_document() -> None:
    """The README links each document under docs/, and there is one at least."""
    linked = {(ROOT / target.split("#")[0]).resolve() for target in relative_links(ROOT / "README.md")}
    assert len(DOCUMENTS) > 1
    assert set(DOCUMENTS[1:]) <= linked


def test_every_relative_link_resolves() -> None:
    """Each relative link in README.md and docs/*.md names an existing file, and an existing
    heading of it when it has a fragment."""
    broken = []
    for document in DOCUMENTS:
        for target in relative_links(document):
            path, _, fragment = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists() or (fragment and fragment not in anchors(linked)):
                broken.append((document.relative_to(ROOT).as_posix(), target))
    assert broken == []
