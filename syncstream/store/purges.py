"""The purges: each one's record (begun, finished, what it removed), and the accounts the writer
saw deleted or taken down, purged by the next export.

A purge spans the store's concerns: its accounts leave the population, and once their data is
removed, the index, the backfills and the exported keys forget them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from syncstream.store.backfills import Backfills
from syncstream.store.connection import Database
from syncstream.store.exports import Exports
from syncstream.store.index import Index
from syncstream.store.kinds import PurgeReason
from syncstream.store.membership import Membership
from syncstream.store.population import PopulationState

__all__ = ["PurgeRecord", "Purges"]


class PurgeRecord(NamedTuple):
    purge_id: str
    dids: tuple[str, ...]
    reason: PurgeReason
    started_at: float
    finished_at: float | None
    cache_files: int | None
    rows: int | None


class Purges:
    """Tables ``purges`` and ``pending_purges``."""

    def __init__(
        self,
        database: Database,
        *,
        population: PopulationState,
        index: Index,
        backfills: Backfills,
        exports: Exports,
        membership: Membership,
    ) -> None:
        self._database = database
        self._db = database.db
        self._population = population
        self._index = index
        self._backfills = backfills
        self._exports = exports
        self._membership = membership

    def begin(self, purge_id: str, dids: Iterable[str], reason: PurgeReason, now: float) -> None:
        """The purge's first step, one transaction: the DIDs leave the population for good
        (remembered as purged, their tracked follows and pending purges gone, their membership
        spells counted and deleted) and the purge is recorded as running. A writer sees the new
        population at its next flush."""
        dids = sorted(set(dids))
        with self._database.transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO purges (purge_id, dids, reason, started_at) VALUES (?, ?, ?, ?)",
                (purge_id, "\n".join(dids), reason, now),
            )
            self._db.executemany("DELETE FROM pending_purges WHERE did = ?", ((did,) for did in dids))
            self._population.withdraw(dids, reason, now)
            self._membership.withdraw(purge_id, dids, reason, now)

    def finish(self, purge_id: str, *, uris: Iterable[str], cache_files: int, rows: int, now: float) -> None:
        """The purge's last step: the index forgets the purged URIs, the store the accounts'
        backfills and exported keys; the purge is recorded done."""
        with self._database.transaction():
            self._index.forget(uris)
            (dids,) = self._db.execute("SELECT dids FROM purges WHERE purge_id = ?", (purge_id,)).fetchone()
            for did in dids.split("\n"):
                self._forget_account(did)
            self._db.execute(
                "UPDATE purges SET finished_at = ?, cache_files = ?, rows = ? WHERE purge_id = ?",
                (now, cache_files, rows, purge_id),
            )

    def reenrol(self, dids: Iterable[str]) -> None:
        """Let purged DIDs be enrolled again (by the user files loaded next), from a clean
        slate: their repositories are backfilled again and none of their records counts as
        exported (the purge took them out of the output)."""
        with self._database.transaction():
            for did in dids:
                if self._population.unpurge(did):
                    self._forget_account(did)  # (a DID that was not purged keeps its history)

    def _forget_account(self, did: str) -> None:
        self._backfills.forget(did)
        self._exports.forget_account(did)

    def records(self, *, unfinished: bool = False) -> list[PurgeRecord]:
        """Every purge recorded, or those still running (or cut short by a crash)."""
        where = " WHERE finished_at IS NULL" if unfinished else ""
        rows = self._db.execute(
            "SELECT purge_id, dids, reason, started_at, finished_at, cache_files, rows "
            f"FROM purges{where} ORDER BY purge_id"
        )
        return [
            PurgeRecord(
                purge_id, tuple(dids.split("\n")), PurgeReason(reason), started, finished, files, removed
            )
            for purge_id, dids, reason, started, finished, files, removed in rows
        ]

    def pending(self) -> dict[str, tuple[int | None, PurgeReason]]:
        """Population DIDs seen deleted or taken down, not purged yet -> (the seq of the
        event, the purge's reason)."""
        rows = self._db.execute("SELECT did, seq, reason FROM pending_purges")
        return {did: (seq, PurgeReason(reason)) for did, seq, reason in rows}

    def decide(self, decisions: Mapping[str, tuple[int, PurgeReason | None]]) -> None:
        """What account events decided (DID -> (seq, reason)): an account to purge at the next
        export, or (reason None) one reactivated before it was."""
        with self._database.transaction():
            for did, (seq, reason) in decisions.items():
                if reason is None:
                    self._db.execute("DELETE FROM pending_purges WHERE did = ?", (did,))
                else:
                    self._db.execute(
                        "INSERT OR IGNORE INTO pending_purges (did, reason, seq) VALUES (?, ?, ?)",
                        (did, reason, seq),
                    )
