"""The cache a store belongs to: its first writer marks the cache with the store's id
(``{cache}/.syncstream-store``) and records where it is; every command that opens the store
with a cache checks the mark.

A store's cursor and exported keys say what is in *its* cache: a writer given the store with
another cache would advance the cursor past frames whose files it wrote elsewhere, and the
store's own cache would never get them. The mark travels with the cache, so a cache moved
whole (``mv``, with no writer running) or copied with its store is still its store's; a new
or another store's cache is refused (exit 2).
"""

from __future__ import annotations

import os

from syncstream.errors import ConfigError
from syncstream.store.connection import Database

__all__ = ["MARK", "CacheHome"]

MARK = ".syncstream-store"


class CacheHome:
    """Table ``cache_home``: one row, where the store's cache was last seen; the cache's mark."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.db

    def recorded(self) -> str | None:
        row = self._db.execute("SELECT path FROM cache_home WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    def check(self, root: str, store_id: str | None = None) -> None:
        """``ConfigError`` when the cache at ``root`` (a real path) is not the store's: marked
        by another store, or unmarked while the store has a cache. A store that never marked
        one (made before version 6) passes. Nothing is written."""
        recorded = self.recorded()
        if store_id is None:
            value = self._database.meta_real("store_id")
            store_id = None if value is None else f"syncstream-{int(value):013x}"
        mark = _read(root)
        if mark is not None and mark != store_id:
            raise ConfigError(
                f"the cache {root} belongs to another state store ({mark}), not to "
                f"{self._database.path}: give that store's --state, or another --cache-dir"
            )
        if mark is None and recorded is not None:
            raise ConfigError(
                f"the state store {self._database.path} belongs to the cache {recorded}, not "
                f"{root} (it has no {MARK} of this store): give --cache-dir {recorded}; a cache "
                "is moved whole (mv, with no writer running), its mark with it"
            )

    def bind(self, root: str, store_id: str) -> None:
        """A writer's part: check the cache, mark it as the store's if it is not yet, and
        record where it is now."""
        self.check(root, store_id)
        if _read(root) is None:
            _write(root, store_id)
        if self.recorded() != root:
            with self._database.transaction():
                self._db.execute(
                    "INSERT INTO cache_home (id, path) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET path = excluded.path",
                    (root,),
                )


def _read(root: str) -> str | None:
    try:  # a link in the cache is never followed
        fd = os.open(os.path.join(root, MARK), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, encoding="utf-8") as handle:
        return handle.read().strip()


def _write(root: str, store_id: str) -> None:
    """The mark, whole or not at all (a temporary, synced, renamed)."""
    temporary = os.path.join(root, f".{MARK}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(f"{store_id}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(temporary, os.path.join(root, MARK))
