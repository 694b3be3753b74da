"""Who wrote, ever: the handlers that wrote to the cache and the datasets the export wrote. A
registry without one of them would lose or leak what they hold."""

from __future__ import annotations

from collections.abc import Iterable

from syncstream.store.connection import Database
from syncstream.store.kinds import WriterKind

__all__ = ["WrittenBy"]


class WrittenBy:
    """Table ``written_by``."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.db

    def names(self) -> tuple[frozenset[str], frozenset[str]]:
        """The names of every handler that has written to the cache and every dataset the
        export has written."""
        rows = self._db.execute("SELECT kind, name FROM written_by").fetchall()
        return (
            frozenset(name for kind, name in rows if kind == WriterKind.HANDLER),
            frozenset(name for kind, name in rows if kind == WriterKind.DATASET),
        )

    def add(self, kind: WriterKind, names: Iterable[str]) -> None:
        with self._database.transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO written_by (kind, name) VALUES (?, ?)", ((kind, n) for n in names)
            )
