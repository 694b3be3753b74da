"""The catalog: every copy the store made outside itself, so that nothing it made is unknown to
it and a purge can reach each one.

- **outputs**: each place an export wrote tables or Parquet files to (its location, format, the
  app id its commits carry, its first and last run);
- **snapshots**: each citable copy ``syncstream snapshot`` wrote (its directory, the output it
  copied, its point, the SHA-256 of its manifest as last issued);
- **record files**: each ``--record`` replay file the writer appended frames to;
- **scratch**: each backfill scratch directory (``syncstream-backfill-*``, a whole repository
  while it is walked), from its creation until it is removed.

A copy is recorded before anything is written to it: a command killed half-way leaves a copy
the store knows. Locations are canonical (``location``): a directory's real path, a URI as given
without its trailing slash, so one place is one row whatever working directory named it.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from syncstream.store.connection import Database

__all__ = ["Catalog", "OutputEntry", "RecordEntry", "ScratchEntry", "SnapshotEntry", "location"]


def location(place: str) -> str:
    """The canonical name of an output, snapshot, record file or scratch directory."""
    if "://" in place:
        return place.rstrip("/")
    return os.path.realpath(place)


class OutputEntry(NamedTuple):
    location: str
    format: str  # "delta" or "parquet"
    app_id: str  # the application id of the store's commits there
    first_run: float
    last_run: float


class SnapshotEntry(NamedTuple):
    location: str
    output: str  # the output it copies
    as_of: str  # the point it was taken at: a table version or an ISO 8601 time
    manifest_sha256: str  # of manifest.json as last issued (a purge re-issues it)
    created_at: float
    reissued_at: float | None  # the last purge that rewrote it, None while it is as written


class RecordEntry(NamedTuple):
    location: str
    first_run: float
    last_run: float


class ScratchEntry(NamedTuple):
    location: str
    did: str  # the repository it holds
    created_at: float


class Catalog:
    """Tables ``catalog_outputs``, ``catalog_snapshots``, ``catalog_records`` and
    ``catalog_scratch``: what the store made, and the questions a purge and ``status`` ask."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.db

    # outputs ----------------------------------------------------------------------------------

    def record_output(self, place: str, format: str, app_id: str, now: float) -> OutputEntry:
        """An export to ``place`` (before it writes there): first seen now, or run again."""
        where = location(place)
        with self._database.transaction():
            self._db.execute(
                "INSERT INTO catalog_outputs (location, format, app_id, first_run, last_run) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (location) DO UPDATE SET "
                "format = excluded.format, app_id = excluded.app_id, last_run = excluded.last_run",
                (where, format, app_id, now, now),
            )
            self._database.set_meta("catalog_outputs", 1)
        entry = self.output(where)
        assert entry is not None
        return entry

    def output(self, place: str) -> OutputEntry | None:
        """The output recorded at ``place`` (any spelling of it), or None: never exported to."""
        row = self._db.execute(
            "SELECT location, format, app_id, first_run, last_run FROM catalog_outputs WHERE location = ?",
            (location(place),),
        ).fetchone()
        return None if row is None else OutputEntry(*row)

    def outputs(self) -> list[OutputEntry]:
        """Every output, the most recently exported to last."""
        rows = self._db.execute(
            "SELECT location, format, app_id, first_run, last_run FROM catalog_outputs "
            "ORDER BY last_run, location"
        )
        return [OutputEntry(*row) for row in rows]

    def keeps_outputs(self) -> bool:
        """Whether this store has recorded its outputs since its first export under the
        catalog (a store of version 5 or earlier exported before it kept any)."""
        return self._database.meta_real("catalog_outputs") is not None

    def forget_output(self, place: str) -> bool:
        """An output deleted on purpose leaves the catalog (a purge no longer waits for it);
        whether it was recorded."""
        with self._database.transaction():
            cursor = self._db.execute("DELETE FROM catalog_outputs WHERE location = ?", (location(place),))
        return cursor.rowcount > 0

    def relocate(self, old: str, new: str) -> int:
        """Copies under the directory ``old`` moved to ``new`` with the store (a study copied or
        moved as a whole): every location under it is renamed; how many."""
        before, after = location(old), location(new)
        moved = 0
        with self._database.transaction():
            for table in ("catalog_outputs", "catalog_snapshots", "catalog_records", "catalog_scratch"):
                rows = self._db.execute(f"SELECT location FROM {table}").fetchall()
                for (where,) in rows:
                    if where == before or where.startswith(before + os.sep):
                        self._db.execute(
                            f"UPDATE {table} SET location = ? WHERE location = ?",
                            (after + where[len(before) :], where),
                        )
                        moved += 1
            self._db.execute(
                "UPDATE catalog_snapshots SET output = ? || substr(output, ?) "
                "WHERE output = ? OR substr(output, 1, ?) = ?",
                (after, len(before) + 1, before, len(before) + 1, before + os.sep),
            )
        return moved

    # snapshots --------------------------------------------------------------------------------

    def record_snapshot(self, place: str, output: str, as_of: str, manifest_sha256: str, now: float) -> None:
        """A snapshot written at ``place`` (taken again there: the newer one)."""
        with self._database.transaction():
            self._db.execute(
                "INSERT INTO catalog_snapshots (location, output, as_of, manifest_sha256, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (location) DO UPDATE SET output = excluded.output, "
                "as_of = excluded.as_of, manifest_sha256 = excluded.manifest_sha256, "
                "created_at = excluded.created_at, reissued_at = NULL",
                (location(place), location(output), as_of, manifest_sha256, now),
            )

    def reissue_snapshot(self, place: str, manifest_sha256: str, now: float) -> None:
        """A purge rewrote the snapshot at ``place`` and issued its manifest again."""
        with self._database.transaction():
            self._db.execute(
                "UPDATE catalog_snapshots SET manifest_sha256 = ?, reissued_at = ? WHERE location = ?",
                (manifest_sha256, now, location(place)),
            )

    def forget_snapshot(self, place: str) -> None:
        """A snapshot refused before anything was written (or removed on purpose)."""
        with self._database.transaction():
            self._db.execute("DELETE FROM catalog_snapshots WHERE location = ?", (location(place),))

    def snapshots(self) -> list[SnapshotEntry]:
        rows = self._db.execute(
            "SELECT location, output, as_of, manifest_sha256, created_at, reissued_at "
            "FROM catalog_snapshots ORDER BY created_at, location"
        )
        return [SnapshotEntry(*row) for row in rows]

    # record files -----------------------------------------------------------------------------

    def record_record_file(self, place: str, now: float) -> None:
        """The writer appends received frames to ``place`` (``--record``)."""
        with self._database.transaction():
            self._db.execute(
                "INSERT INTO catalog_records (location, first_run, last_run) VALUES (?, ?, ?) "
                "ON CONFLICT (location) DO UPDATE SET last_run = excluded.last_run",
                (location(place), now, now),
            )

    def records(self) -> list[RecordEntry]:
        rows = self._db.execute(
            "SELECT location, first_run, last_run FROM catalog_records ORDER BY first_run, location"
        )
        return [RecordEntry(*row) for row in rows]

    # scratch ----------------------------------------------------------------------------------

    def add_scratch(self, place: str, did: str, now: float) -> None:
        """A backfill made the scratch directory ``place`` for ``did``'s repository."""
        with self._database.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO catalog_scratch (location, did, created_at) VALUES (?, ?, ?)",
                (location(place), did, now),
            )

    def drop_scratch(self, place: str) -> None:
        """The scratch directory ``place`` is gone."""
        with self._database.transaction():
            self._db.execute("DELETE FROM catalog_scratch WHERE location = ?", (location(place),))

    def scratch(self) -> list[ScratchEntry]:
        rows = self._db.execute(
            "SELECT location, did, created_at FROM catalog_scratch ORDER BY created_at, location"
        )
        return [ScratchEntry(*row) for row in rows]
