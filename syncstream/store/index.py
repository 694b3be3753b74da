"""The cached-URI index: the handlers each URI was cached under, so that a delete by another
account (an unlike, an unfollow) is routed to where the record went."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from syncstream.store.connection import Database

__all__ = ["Index"]


class Index:
    """Table ``cached_uris``."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.db

    def handlers_of(self, uris: Iterable[str]) -> Mapping[str, frozenset[str]]:
        """The names of the handlers each URI was cached under (URIs never cached are absent).
        Names are the registry's keys: routing maps them back through its own registry."""
        found: dict[str, set[str]] = {}
        for uri in uris:
            for (name,) in self._db.execute("SELECT handler_key FROM cached_uris WHERE uri = ?", (uri,)):
                found.setdefault(uri, set()).add(name)
        return {uri: frozenset(names) for uri, names in found.items()}

    def add(self, rows: Iterable[tuple[str, str]], now: float) -> None:
        """(URI, handler name) rows, indexed at ``now``. The writer adds a batch's rows with
        the cursor that covers them (``StateStore.commit``)."""
        with self._database.transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO cached_uris (uri, handler_key, indexed_at) VALUES (?, ?, ?)",
                ((uri, str(key), now) for uri, key in rows),
            )

    def forget(self, uris: Iterable[str]) -> None:
        """A purge's URIs: their files are gone."""
        with self._database.transaction():
            self._db.executemany("DELETE FROM cached_uris WHERE uri = ?", ((u,) for u in uris))

    def prune(self, older_than: float) -> int:
        """Forget index rows written before ``older_than`` (the index retention): a delete of
        such a record by another account is no longer routed. How many were forgotten."""
        with self._database.transaction():
            forgotten: int = self._db.execute(
                "DELETE FROM cached_uris WHERE indexed_at < ?", (older_than,)
            ).rowcount
        return forgotten

    def count(self) -> int:
        """How many rows the index holds."""
        (count,) = self._db.execute("SELECT count(*) FROM cached_uris").fetchone()
        return int(count)
