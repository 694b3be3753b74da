"""Coverage: what relay seqs each writer run processed, and the ranges it knows it lost.

A writer run keeps its rows in memory and hands them to ``StateStore.commit`` with the cursor
that covers them, so the record never runs ahead of the files, nor behind: a crash loses the
rows of frames the cursor did not cover, and the rerun processes those frames again as rows
of its own run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from syncstream.store.connection import Database
from syncstream.store.cursors import CURSOR
from syncstream.store.kinds import CoverageKind, CoverageReason

__all__ = ["Coverage", "CoverageRow", "source_name"]


def source_name(source: str) -> str:
    """A cursor's key as a reader names the source: ``replay``, or the relay's host."""
    return "replay" if source == CURSOR else source.removeprefix("cursor:")


class CoverageRow(NamedTuple):
    """One row of ``collection/coverage``: a covered run of seqs, or a gap. A gap's times are
    those of the frames on either side of it (the last before, the first after)."""

    writer_run: str  # the writer process's run (its id sorts by start time)
    number: int  # the row's place within the run
    source: str  # the cursor's key (``source_name`` gives the reader's name)
    kind: CoverageKind
    first_seq: int | None
    last_seq: int | None
    first_time: str | None
    last_time: str | None
    reason: CoverageReason
    frames: int  # frames processed (a gap: 0)


_COLUMNS = "writer_run, number, source, kind, first_seq, last_seq, first_time, last_time, reason, frames"


class Coverage:
    """Table ``coverage``."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.db

    def record(self, rows: Iterable[CoverageRow]) -> None:
        """Store these rows as they now stand (a run grows batch by batch: replaced by key)."""
        with self._database.transaction():
            self._db.executemany(
                f"INSERT OR REPLACE INTO coverage ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )

    def runs(self, source: str | None = None) -> list[CoverageRow]:
        """Every row (of ``source``, a cursor's key, when given), in the order they were
        recorded: by writer run, then within it."""
        where, parameters = ("WHERE source = ?", (source,)) if source is not None else ("", ())
        found = self._db.execute(
            f"SELECT {_COLUMNS} FROM coverage {where} ORDER BY writer_run, number", parameters
        )
        return [
            CoverageRow(run, number, src, CoverageKind(kind), first, last, t0, t1, CoverageReason(why), n)
            for run, number, src, kind, first, last, t0, t1, why, n in found
        ]

    def last_time(self, source: str) -> str | None:
        """The relay's time of the last frame a covered run of ``source`` processed, if any."""
        row = self._db.execute(
            "SELECT last_time FROM coverage WHERE source = ? AND kind = 'covered' AND last_time IS NOT NULL "
            "ORDER BY last_seq DESC LIMIT 1",
            (source,),
        ).fetchone()
        return None if row is None else str(row[0])
