"""A chunk of an export run on its way through planning, writing and commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from syncstream.listing import Entry
from syncstream.registry.datasets import Dataset
from syncstream.registry.views import FileHead
from syncstream.store import ExportKey
from syncstream.timestamps import is_seq, micros

__all__ = ["Chunk", "Planned", "unexportable"]


class Planned(NamedTuple):
    relative_path: str  # under the output: {dataset}/partition_date=.../part-{chunk}.parquet
    dataset: Dataset
    files: list[bytes]  # the part's cache files ...
    keys: list[ExportKey]  # ... and their keys, row by row


class Chunk:
    """One chunk of a claim: its files, then its planned parts and their sizes once written."""

    def __init__(self, chunk_id: str, claim_dir: str, entries: Sequence[Entry], data: list[bytes]) -> None:
        self.id, self.claim_dir, self.entries = chunk_id, claim_dir, entries
        self.data = data  # each entry's bytes, read before the chunk is listed
        self.planned: list[Planned] = []
        self.sizes: list[int] = []  # each part's bytes, once written
        self.released: list[ExportKey] = []  # keys found exported, whose files this removes

    @property
    def keys(self) -> list[ExportKey]:
        return [key for planned in self.planned for key in planned.keys]


def unexportable(head: FileHead) -> str | None:
    """Why a decoded cache file cannot be a row (the same checks as the writer's), or None."""
    if head.seq is not None and not is_seq(head.seq):
        return f"seq {head.seq} is not an int64"
    if micros(head.event_time) is None:
        return f"event_time {head.event_time!r} is not a datetime"
    if micros(head.synctimestamp) is None:
        return f"synctimestamp {head.synctimestamp!r} is not a datetime"
    return None
