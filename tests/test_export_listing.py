"""Listing a cache (or a claim) chunk by chunk, by each handler's read strategy."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncstream.listing import chunks, list_tree, new_id, read_lines, write_text_atomic
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.types import HandlerKey


def make_tree(root: Path) -> set[tuple[str, HandlerKey]]:
    made = set()
    for i in range(7):
        flat = f"{HANDLERS[HandlerKey.POST].directory}/author_did=did:plc:a_post_uri_suffix={i}.json"
        nested = f"{HANDLERS[HandlerKey.LIKE].directory}/.{i}/author_did=did:plc:b_like_uri_suffix={i}.json"
        for relpath, key in ((flat, HandlerKey.POST), (nested, HandlerKey.LIKE)):
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            (root / relpath).write_text("{}")
            made.add((relpath, key))
    (root / HANDLERS[HandlerKey.POST].directory / ".author_did=x.json.tmp").write_text("a write cut short")
    return made


@pytest.mark.parametrize("size", [1, 3, 7, 100])
def test_chunks_hold_every_visible_file_once_and_at_most_size(tmp_path: Path, size: int) -> None:
    """Every record file (nested under dot-named rkeys too) comes once, no temporary, <= size a chunk."""
    made = make_tree(tmp_path)
    listed = list(chunks(str(tmp_path), list(HANDLERS.values()), size))
    assert all(0 < len(chunk) <= size for chunk in listed)
    flat = [(entry.relpath, entry.key) for chunk in listed for entry in chunk]
    assert len(flat) == len(made) and set(flat) == made
    assert {(e.relpath, e.key) for e in list_tree(str(tmp_path), list(HANDLERS.values()))} == made


def test_bookkeeping_is_written_whole_and_read_back(tmp_path: Path) -> None:
    """A bookkeeping file is replaced whole; a missing one reads as no lines; ids sort by time."""
    path = str(tmp_path / "chunk.files")
    assert read_lines(path) == []
    write_text_atomic(path, "claim\na.json\n")
    write_text_atomic(path, "claim\nb.json\n")
    assert read_lines(path) == ["claim", "b.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["chunk.files"]
    first, second = new_id(), new_id()
    assert len(first) == 20 and first <= second
