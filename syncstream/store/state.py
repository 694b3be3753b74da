"""The state store: one SQLite connection, its concerns as attributes.

The cursor and the index rows of a batch are committed in one transaction, after the cache
files of that batch are durable: a crash before the commit replays the batch, which rewrites
the same file names and the same index rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

from syncstream.store.backfills import Backfills
from syncstream.store.cache_home import CacheHome
from syncstream.store.catalog import Catalog
from syncstream.store.chains import Chains, Link
from syncstream.store.connection import Database
from syncstream.store.coverage import Coverage, CoverageRow
from syncstream.store.cursors import CURSOR, Cursors
from syncstream.store.exports import Exports
from syncstream.store.index import Index
from syncstream.store.kinds import PurgeReason, WriterKind
from syncstream.store.membership import Closing, Membership, Opening
from syncstream.store.population import PopulationState
from syncstream.store.purges import Purges
from syncstream.store.written import WrittenBy

__all__ = ["StateStore"]


class StateStore:
    """The store at ``path``: ``population`` (users, purged DIDs, tracked follows),
    ``cursors``, ``index`` (the cached URIs), ``backfills``, ``chains`` (verified accounts'
    last revs), ``purges``, ``exports`` (the export's keys and runs), ``written_by``,
    ``cache_home`` (the store's cache), ``catalog`` (every copy made outside the store:
    outputs, snapshots, record files, backfill scratch), and the study's record: ``coverage``
    (the seqs each writer run processed or lost) and ``membership`` (who was in from which seq
    to which), over one connection. A step of one concern is
    one transaction; ``commit`` makes a writer's batch, which touches several, one too.

    Use it as a context manager, or ``close`` it."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        """Open the store at ``path``, creating it with ``create`` (the writer's part); else a
        missing or empty file is refused. ``ConfigError`` when it is not a store; a file that
        is not one is left as it was."""
        self._database = Database(path, create=create)
        self.path = self._database.path
        self.population = PopulationState(self._database)
        self.cursors = Cursors(self._database)
        self.index = Index(self._database)
        self.backfills = Backfills(self._database)
        self.chains = Chains(self._database)
        self.written_by = WrittenBy(self._database)
        self.cache_home = CacheHome(self._database)
        self.catalog = Catalog(self._database)
        self.coverage = Coverage(self._database)
        self.membership = Membership(self._database)
        self.exports = Exports(self._database, self.written_by)
        self.purges = Purges(
            self._database,
            population=self.population,
            index=self.index,
            backfills=self.backfills,
            exports=self.exports,
            membership=self.membership,
        )

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._database.close()

    def truncate_wal(self) -> bool:
        """Checkpoint the WAL and truncate it (after a purge: no deleted row's bytes stay in
        it); False when a reader kept it from finishing."""
        return self._database.truncate_wal()

    def commit(
        self,
        cursor: int | None,
        index: Iterable[tuple[str, str]] = (),
        follows: Mapping[str, tuple[str, str] | None] | None = None,
        *,
        account_purges: Mapping[str, tuple[int, PurgeReason | None]] | None = None,
        population_version: int | None = None,
        cursor_source: str = CURSOR,
        resync: Iterable[str] = (),
        written: Iterable[str] = (),
        chains: Mapping[str, Link] | None = None,
        coverage: Iterable[CoverageRow] = (),
        membership: Iterable[Opening | Closing] = (),
    ) -> None:
        """Commit a batch's index rows, tracked-follow changes (URI -> (follower, subject), or
        None when unfollowed), the purges its account events decided (DID -> (seq, reason): an
        account to purge at the next export, or None when reactivated before it was), the
        DIDs to ``resync`` (a #sync), the handlers that ``written`` files for the first time,
        the verified accounts' ``chains`` that moved on, the ``coverage`` rows and
        ``membership`` changes of the frames it covers, and the cursor that covers them, in one
        short transaction.

        Call it only once the batch's cache files are durable.
        """
        now = time.time()
        with self._database.transaction():
            self.index.add(index, now)
            self.population.track_follows(follows or {})
            self.purges.decide(account_purges or {})
            if population_version is not None:
                self.population.see_version(population_version)
            self.backfills.resync(resync, now)
            self.written_by.add(WriterKind.HANDLER, (str(n) for n in written))
            self.chains.put(chains or {})
            self.coverage.record(coverage)
            self.membership.apply(membership)
            if cursor is not None:
                self.cursors.set(cursor, cursor_source)
