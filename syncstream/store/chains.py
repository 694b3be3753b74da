"""Each verified account's chain: the rev and MST root (``data``) of its last verified commit.

The verified stream checks that a commit follows on (its ``since`` is this rev, its
``prevData`` this root) and that its rev is newer; a backfill starts the chain at the
repository it wrote. Rows are written with the cursor that covers them (``StateStore.commit``),
so that a restart takes the chain up exactly where the cursor does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import NamedTuple

from syncstream.store.connection import Database

__all__ = ["Chains", "Link"]


class Link(NamedTuple):
    rev: str  # the last verified commit's rev
    data: bytes | None  # its MST root (a CID's bytes); None when it is not known


class Chains:
    """Table ``chains``, one row per DID."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.db

    def count(self) -> int:
        """How many accounts have a verified chain."""
        (count,) = self._db.execute("SELECT count(*) FROM chains").fetchone()
        return int(count)

    def get(self, did: str) -> Link | None:
        row = self._db.execute("SELECT rev, data FROM chains WHERE did = ?", (did,)).fetchone()
        return None if row is None else Link(row[0], row[1])

    def empty(self) -> bool:
        """Whether no DID has a chain (a writer's view then need not ask for any)."""
        return self._db.execute("SELECT 1 FROM chains LIMIT 1").fetchone() is None

    def put(self, links: Mapping[str, Link]) -> None:
        """Each DID's chain moves on to its link (joined to the caller's transaction)."""
        now = time.time()
        with self._database.transaction():
            self._db.executemany(
                "INSERT INTO chains (did, rev, data, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (did) "
                "DO UPDATE SET rev = excluded.rev, data = excluded.data, updated_at = excluded.updated_at",
                ((did, link.rev, link.data, now) for did, link in links.items()),
            )

    def forget(self, dids: list[str] | None = None) -> None:
        """Drop these DIDs' chains (None: every one): the next commit of each starts one afresh."""
        with self._database.transaction():
            if dids is None:
                self._db.execute("DELETE FROM chains")
            else:
                self._db.executemany("DELETE FROM chains WHERE did = ?", ((did,) for did in dids))
