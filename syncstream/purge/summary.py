"""What a purge did (``PurgeSummary``: counts per purge, summed over the outputs it went
through), and whether a writer holds the cache while it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from syncstream.cache import WriterLock
from syncstream.errors import CacheLockedError
from syncstream.store import PurgeReason

if TYPE_CHECKING:
    from syncstream.purge.copies import Copies

__all__ = ["PurgeSummary", "writer_running"]


class PurgeSummary(msgspec.Struct, kw_only=True):
    purge_id: str
    dids: tuple[str, ...]
    reason: PurgeReason
    cache_files: int = 0  # cache and set-aside files removed
    rows: int = 0  # output rows removed ...
    parts: int = 0  # ... from this many Parquet files (plain output) or tables (Delta)
    vacuumed: int = 0  # files a table's purge replaced, removed (history included)
    datasets: dict[str, int] = msgspec.field(default_factory=dict)  # rows removed per dataset
    recovered: bool = False  # an interrupted purge, finished
    outputs: int = 0  # outputs gone through (every one the catalog records)
    snapshots: int = 0  # snapshots rewritten, their manifests re-issued ...
    snapshot_rows: int = 0  # ... without this many rows
    record_files: int = 0  # record files rewritten ...
    frames: int = 0  # ... without this many frames
    scratch: int = 0  # backfill scratch directories removed
    bookkeeping: int = 0  # export bookkeeping files and directories that named the accounts

    def add(self, part: PurgeSummary) -> None:
        """Count one output's pass in (the passes of one purge over its outputs)."""
        self.recovered = part.recovered
        self.cache_files += part.cache_files
        self.rows += part.rows
        self.parts += part.parts
        self.vacuumed += part.vacuumed
        for name, rows in part.datasets.items():
            self.datasets[name] = self.datasets.get(name, 0) + rows

    def count(self, copies: Copies) -> None:
        """Count the other copies in (``purge.copies``)."""
        self.snapshots, self.snapshot_rows = copies.snapshots, copies.snapshot_rows
        self.record_files, self.frames = copies.record_files, copies.frames
        self.scratch, self.bookkeeping = copies.scratch, copies.bookkeeping


def writer_running(root: str) -> bool:
    """Whether a writer (or a backfill) holds the cache at ``root`` now."""
    try:
        WriterLock(root).acquire().release()
    except CacheLockedError:
        return True
    return False
