"""Data files under a table that no version of its log names: what a killed run left.

A compaction or a purge killed between writing its files and committing them leaves Parquet
files that the log never named, and that a lite vacuum (the files the log marks removed) never
sees; they may hold a purged account's rows. Both commands write such files only while they
hold the output's lock (``syncstream.lake.lock``), so under that lock every unnamed file of
theirs is a dead run's, and goes at once.

An export's files are written before it takes the lock and committed under it; one killed
after recording its run (``{claim}.commit``) is committed by its store's next export or purge,
which finds its files where it left them. So a file named as an export names its data
(``part-{20-digit chunk id}.parquet``) is kept until it is older than ``keep_hours``: the
longest a killed export may wait for its recovery (a compaction's ``--retention-hours``).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from syncstream.lake.delta import Location

__all__ = ["EXPORT_PART", "EXPORT_RECOVERY_HOURS", "remove_orphans"]

EXPORT_PART = re.compile(r"part-\d{20}\.parquet")
EXPORT_RECOVERY_HOURS = 168.0  # a purge's keep_hours: a compaction's default retention


def remove_orphans(where: Location, *, keep_hours: float) -> list[str]:
    """Remove the table's files that no version of its log names (older than ``keep_hours``
    for an export's); the paths removed, relative to the table."""
    import pyarrow.fs as pafs  # noqa: PLC0415
    from deltalake import DeltaTable  # noqa: PLC0415
    from deltalake.fs import DeltaStorageHandler  # noqa: PLC0415

    table = DeltaTable(where.uri, storage_options=where.storage_options)
    removed_by_log = _candidates(table, 0, full=False)  # the lite vacuum's, kept for time travel
    unnamed = _candidates(table, 0, full=True) - removed_by_log
    old = _candidates(table, int(keep_hours), full=True) - removed_by_log
    doomed = sorted(p for p in unnamed if p in old or not EXPORT_PART.fullmatch(posixpath.basename(p)))
    del table
    if doomed:
        filesystem = pafs.PyFileSystem(DeltaStorageHandler(where.uri, options=where.storage_options))
        for path in doomed:
            filesystem.delete_file(path)
    return doomed


def _candidates(table: Any, hours: int, *, full: bool) -> set[str]:
    """What a vacuum would remove (a dry run): lite, the files the log marks removed; full,
    those and the files no version names; older than ``hours``."""
    found: list[str] = table.vacuum(
        retention_hours=hours, dry_run=True, enforce_retention_duration=False, full=full
    )
    return set(found)
