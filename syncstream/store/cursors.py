"""The cursors: the last durable seq of each source the writer reads."""

from __future__ import annotations

from syncstream.store.connection import Database

__all__ = ["CURSOR", "Cursors", "relay_cursor"]

CURSOR = "cursor"  # a replay's cursor; a relay's is relay_cursor(host)


def relay_cursor(url: str) -> str:
    """The state's key of a relay's cursor: its host (seqs are a relay's own)."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    return f"cursor:{host}"


class Cursors:
    """Kept in ``meta``, one key per source."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.db

    def get(self, source: str = CURSOR) -> int | None:
        """The last durable seq of ``source``: ``CURSOR`` for replays, ``relay_cursor(host)``
        for a relay, whose seqs are its own. A relay with no cursor yet takes the single
        cursor of a store written before cursors were kept per relay, once."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (source,)).fetchone()
        if row is None and source != CURSOR:
            per_relay = self._db.execute("SELECT 1 FROM meta WHERE key LIKE 'cursor:%'").fetchone()
            if per_relay is None:
                row = self._db.execute("SELECT value FROM meta WHERE key = ?", (CURSOR,)).fetchone()
        return None if row is None else int(row[0])

    def sources(self) -> dict[str, int]:
        """Every source's last durable seq: ``CURSOR`` (a replay's) and ``cursor:HOST`` (a
        relay's), by key."""
        rows = self._db.execute("SELECT key, value FROM meta WHERE key = ? OR key LIKE 'cursor:%'", (CURSOR,))
        return {key: int(value) for key, value in rows if value is not None}

    def set(self, seq: int, source: str = CURSOR) -> None:
        """``source``'s seqs up to ``seq`` are durable. The writer sets it with the batch it
        covers (``StateStore.commit``)."""
        with self._database.transaction():
            self._database.set_meta(source, seq)
