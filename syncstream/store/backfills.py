"""The repository backfills: which DIDs are done, failed (and how often), or pending again."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import NamedTuple

from syncstream.store.connection import Database
from syncstream.store.kinds import BackfillStatus

__all__ = ["Backfill", "Backfills"]


class Backfill(NamedTuple):
    status: BackfillStatus
    rev: str | None  # the repository's revision, when done
    reason: str | None  # why it failed
    attempts: int


class Backfills:
    """Table ``backfills``, one row per DID."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.db

    def recorded(self) -> dict[str, Backfill]:
        """DID -> its backfill, for every backfill recorded."""
        rows = self._db.execute("SELECT did, status, rev, reason, attempts FROM backfills")
        return {
            did: Backfill(BackfillStatus(status), rev, reason, attempts)
            for did, status, rev, reason, attempts in rows
        }

    def history(self) -> list[tuple[float, BackfillStatus, int | None]]:
        """Each DID's backfill as (when it last changed, its status, the records it wrote),
        oldest first: the backfill's progress over time."""
        rows = self._db.execute("SELECT updated_at, status, records FROM backfills ORDER BY updated_at")
        return [(updated, BackfillStatus(status), records) for updated, status, records in rows]

    def due(self, dids: Iterable[str], now: float, *, force: bool = False) -> list[str]:
        """Those of ``dids`` to backfill now: never done, pending (a #sync), or failed and past
        their backoff (1 minute after the first failure, doubling, at most a day); with
        ``force``, all of them."""
        rows = self._db.execute("SELECT did, status, attempts, updated_at FROM backfills").fetchall()
        recorded = {did: (status, attempts, updated) for did, status, attempts, updated in rows}
        due = []
        for did in dids:
            status, attempts, updated = recorded.get(did, ("", 0, 0.0))
            waited = now - updated >= min(60.0 * 2 ** max(attempts - 1, 0), 86_400.0)
            if (
                force
                or status in ("", BackfillStatus.PENDING)
                or (status == BackfillStatus.FAILED and waited)
            ):
                due.append(did)
        return due

    def record(
        self, did: str, *, rev: str | None = None, reason: str | None = None, records: int | None = None
    ) -> None:
        """A DID's backfill is done at ``rev`` (with ``records``), or failed for ``reason``."""
        status = BackfillStatus.FAILED if reason is not None else BackfillStatus.DONE
        with self._database.transaction():
            self._db.execute(
                "INSERT INTO backfills (did, status, rev, reason, records, attempts, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT (did) DO UPDATE SET "
                "status = excluded.status, rev = excluded.rev, reason = excluded.reason, "
                "records = excluded.records, attempts = attempts + 1, updated_at = excluded.updated_at",
                (did, status, rev, reason, records, time.time()),
            )

    def resync(self, dids: Iterable[str], now: float) -> None:
        """A #sync of each DID: its repository must be fetched again."""
        with self._database.transaction():
            self._db.executemany(
                "INSERT INTO backfills (did, status, attempts, updated_at) VALUES (?, ?, 0, ?) "
                "ON CONFLICT (did) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
                ((did, BackfillStatus.PENDING, now) for did in dids),
            )

    def forget(self, did: str) -> None:
        """A purged account's backfill: enrolled again, it is backfilled from scratch."""
        with self._database.transaction():
            self._db.execute("DELETE FROM backfills WHERE did = ?", (did,))
