"""Membership: who was in the population, in which role, from which relay seq to which.

A spell opens at the first seq a writer processed with the account in the population and
closes at the last; the writer hands its openings and closings to ``StateStore.commit`` with
the cursor that covers them. A purge deletes the account's spells and keeps only how many
accounts of each role it withdrew (``withdrawals``): the denominators stay, the DIDs go.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from syncstream.store.connection import Database
from syncstream.store.kinds import Change, PurgeReason, UserKind

__all__ = ["Closing", "Membership", "Opening", "Spell", "Withdrawal"]


class Spell(NamedTuple):
    """One row of ``population/membership``: an account in one role over a range of seqs."""

    did: str
    role: UserKind
    source: str  # the cursor's key whose seqs these are
    from_seq: int
    to_seq: int | None  # None while it is in
    from_time: str | None  # the relay's time of those frames
    to_time: str | None
    how: Change  # how it came in ...
    left_how: Change | None  # ... and went out


class Opening(NamedTuple):
    did: str
    role: UserKind
    source: str
    from_seq: int
    from_time: str | None
    how: Change


class Closing(NamedTuple):
    did: str
    role: UserKind
    to_seq: int
    to_time: str | None
    left_how: Change


class Withdrawal(NamedTuple):
    """What a purge left of its accounts' spells: how many accounts of a role, and why."""

    purge_id: str
    role: UserKind
    reason: PurgeReason
    accounts: int
    withdrawn_at: float


_OPEN = (
    "INSERT INTO membership (did, role, source, from_seq, from_time, how) SELECT ?, ?, ?, ?, ?, ? "
    "WHERE NOT EXISTS (SELECT 1 FROM purged_dids WHERE did = ?) "
    "AND NOT EXISTS (SELECT 1 FROM membership WHERE did = ? AND role = ? AND to_seq IS NULL)"
)
_COLUMNS = "did, role, source, from_seq, to_seq, from_time, to_time, how, left_how"


class Membership:
    """Tables ``membership`` and ``withdrawals``."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.db

    def apply(self, changes: Iterable[Opening | Closing]) -> None:
        """Open and close spells, in order. An account has at most one open spell per role,
        and none once purged: a writer that had not yet seen a purge opens nothing for it."""
        with self._database.transaction():
            for change in changes:
                if isinstance(change, Opening):
                    self._db.execute(_OPEN, (*change, change.did, change.did, change.role))
                else:
                    self._db.execute(
                        "UPDATE membership SET to_seq = ?, to_time = ?, left_how = ? "
                        "WHERE did = ? AND role = ? AND to_seq IS NULL",
                        (change.to_seq, change.to_time, change.left_how, change.did, change.role),
                    )

    def spells(self, *, open_only: bool = False) -> list[Spell]:
        """Every spell (or those still open), in the order they opened."""
        where = "WHERE to_seq IS NULL" if open_only else ""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM membership {where} ORDER BY spell_id")
        return [
            Spell(
                did,
                UserKind(role),
                source,
                first,
                last,
                t0,
                t1,
                Change(how),
                None if left is None else Change(left),
            )
            for did, role, source, first, last, t0, t1, how, left in rows
        ]

    def withdraw(self, purge_id: str, dids: Iterable[str], reason: PurgeReason, now: float) -> None:
        """The accounts' spells go; how many accounts of each role had one stays. Run again
        for the same purge (a rerun after a crash) it keeps the first count."""
        wanted = sorted(set(dids))
        with self._database.transaction():
            counts: dict[str, int] = {}
            for did in wanted:
                for (role,) in self._db.execute("SELECT DISTINCT role FROM membership WHERE did = ?", (did,)):
                    counts[role] = counts.get(role, 0) + 1
            self._db.executemany(
                "INSERT OR IGNORE INTO withdrawals (purge_id, role, reason, accounts, withdrawn_at) "
                "VALUES (?, ?, ?, ?, ?)",
                ((purge_id, role, reason, count, now) for role, count in sorted(counts.items())),
            )
            self._db.executemany("DELETE FROM membership WHERE did = ?", ((did,) for did in wanted))

    def withdrawals(self) -> list[Withdrawal]:
        rows = self._db.execute(
            "SELECT purge_id, role, reason, accounts, withdrawn_at FROM withdrawals ORDER BY purge_id, role"
        )
        return [Withdrawal(p, UserKind(role), PurgeReason(why), n, at) for p, role, why, n, at in rows]
