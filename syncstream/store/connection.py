"""The store's one SQLite connection (WAL): opening it, its transactions, its ``meta`` values.

Transactions are short: the writer keeps a batch's index rows in memory and commits them with
the cursor, so an export beside it never waits long.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from pathlib import Path
from types import TracebackType

from syncstream.errors import ConfigError
from syncstream.store.layout import SCHEMA, VERSION, migrate

__all__ = ["Database", "Transaction"]


class Database:
    """The connection every concern of the store shares."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        """Open the store at ``path``, creating it with ``create`` (the writer's part); else a
        missing or empty file is refused. ``ConfigError`` when it is not a store; a file that
        is not one is left as it was."""
        self.path = str(path)
        if not create and not os.path.isfile(self.path):
            raise ConfigError(
                f"no state store at {os.path.abspath(self.path)}: only `syncstream init` and the "
                "writer create one; check --state"
            )
        try:
            # Read-write without create: a store that vanished meanwhile is not made anew.
            target = self.path if create else f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=rw"
            self.db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, uri=not create)
        except sqlite3.Error as error:
            raise ConfigError(f"cannot open the state store {self.path}: {error}") from None
        try:
            self._prepare(create)
        except sqlite3.Error as error:
            self.db.close()
            raise ConfigError(f"{self.path} is not a syncstream state store ({error})") from None
        except ConfigError:
            self.db.close()
            raise

    def _prepare(self, create: bool) -> None:
        """Check that the file is a store, then bring it to ``VERSION``: a new one is stamped,
        an old one migrated, in one transaction."""
        self.db.execute("PRAGMA busy_timeout=30000")
        # A deleted row's bytes are overwritten, not left in free pages: a purged account's
        # data must not stay in the file (SQLite's default is off unless built otherwise).
        self.db.execute("PRAGMA secure_delete=ON")
        listed = self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {name for (name,) in listed}
        if tables and "meta" not in tables:
            raise ConfigError(
                f"{self.path} is an SQLite database but not a syncstream state store "
                f"(it has tables {', '.join(sorted(tables)[:5])}); give another --state"
            )
        if not tables and not create:
            raise ConfigError(
                f"{self.path} is not a syncstream state store (it is empty): only `syncstream init` "
                "and the writer create one; check --state"
            )
        if tables:
            self._refuse_newer()  # before the journal mode, the schema or a migration touch it
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        with self.transaction():
            if not tables or migrate(self.db, self.path) < VERSION:
                self.set_meta("version", VERSION)

    def _refuse_newer(self) -> None:
        """A store of a newer layout is refused as it was: reading its version is all."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        if row is not None and int(row[0]) > VERSION:
            raise ConfigError(
                f"{self.path} was written by a newer syncstream (state version {int(row[0])}, "
                f"this one reads {VERSION}); upgrade syncstream (the store was not changed)"
            )

    def close(self) -> None:
        self.db.close()

    def truncate_wal(self) -> bool:
        """Copy the WAL into the file and truncate it to nothing, so that no earlier image of a
        page (a deleted row's bytes) stays in it; False when a reader kept it from finishing
        (the next checkpoint does)."""
        busy, _, _ = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy

    def transaction(self) -> Transaction:
        """A write transaction (``BEGIN IMMEDIATE``). One opened inside another joins it: the
        outer one commits both, or rolls both back, so a step that spans concerns (a writer's
        batch, a purge) is one transaction made of each concern's own statements."""
        return Transaction(self.db)

    def meta_real(self, key: str) -> float | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def set_meta(self, key: str, value: float | int | None) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


class Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outermost = False

    def __enter__(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outermost = True

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.outermost:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
