"""The cache a store belongs to: recorded by its first writer, checked by every command that
opens the store with a cache, moved only on purpose (``write --cache-moved``).

A store's cursor and exported keys say what is in *its* cache: a writer given the store with
another cache would advance the cursor past frames whose files it wrote elsewhere, and the
store's own cache would then never get them.
"""

from __future__ import annotations

import os

from syncstream.errors import ConfigError
from syncstream.store.connection import Database

__all__ = ["CacheHome"]


class CacheHome:
    """Table ``cache_home``: one row, the real path of the store's cache."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.db

    def recorded(self) -> str | None:
        row = self._db.execute("SELECT path FROM cache_home WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    def check(self, root: str) -> None:
        """``ConfigError`` when the store belongs to another cache than ``root`` (a real path);
        a store that records none (made before version 6) passes."""
        recorded = self.recorded()
        if recorded is not None and recorded != root:
            raise ConfigError(
                f"the state store {self._database.path} belongs to the cache {recorded}, not "
                f"{root}: give --cache-dir {recorded}, or, if that cache was moved to {root}, "
                "run the writer once with --cache-moved"
            )

    def bind(self, root: str, *, moved: bool = False) -> None:
        """Record ``root`` as the store's cache (a writer's part): checked against the one
        recorded unless ``moved``, which records the new place once the old one is gone."""
        recorded = self.recorded()
        if moved and recorded is not None and recorded != root and os.path.lexists(recorded):
            raise ConfigError(
                f"--cache-moved: the store's cache {recorded} is still there; move it to {root} "
                "first (one store, one cache)"
            )
        if not moved:
            self.check(root)
        if recorded != root:
            with self._database.transaction():
                self._db.execute(
                    "INSERT INTO cache_home (id, path) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET path = excluded.path",
                    (root,),
                )
