"""A claim's files listed chunk by chunk, and the small bookkeeping files of the protocol.

The listing walks each handler's directory by the handler's own read strategy, so that the
export finds exactly the files the writer wrote; a chunk is built as it is needed, so memory is
bounded by the chunk, not by the cache. Bookkeeping files (a claim's directories, a chunk's
files and outputs) are written whole, synced and renamed into place.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from syncstream.registry.handlers import HandlerConfig

__all__ = ["Entry", "chunks", "list_tree", "new_id", "read_lines", "write_text_atomic"]


class Entry(NamedTuple):
    """A cache file: where it is, and the handler whose directory holds it."""

    relpath: str  # relative to the tree's root (or to a claim's directory: the same layout)
    key: str  # the handler's name in its registry


def list_tree(root: str, handlers: Sequence[HandlerConfig]) -> Iterator[Entry]:
    """Every visible cache file under ``root``, handler by handler, by each read strategy."""
    for chunk in chunks(root, handlers, 1 << 16):
        yield from chunk


def chunks(root: str, handlers: Sequence[HandlerConfig], size: int) -> Iterator[list[Entry]]:
    """The visible cache files under ``root``, ``size`` at a time, listed as they are needed."""
    start = len(os.path.join(root, ""))
    chunk: list[Entry] = []
    for config in handlers:
        key = config.key
        paths = config.read_strategy(os.path.join(root, config.directory))
        while more := [Entry(path[start:], key) for path in itertools.islice(paths, size - len(chunk))]:
            chunk += more
            if len(chunk) >= size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def write_text_atomic(path: str, text: str) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, path)


def read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return [line for line in handle.read().split("\n") if line]
    except FileNotFoundError:
        return []


def new_id() -> str:
    return f"{time.time_ns():020d}"
