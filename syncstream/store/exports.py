"""The export's bookkeeping: the keys of the rows it committed (each row exported once), its
claims and runs, and the numbers its tables' application transactions carry."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence

from syncstream.store.connection import Database
from syncstream.store.kinds import KeyKind, WriterKind
from syncstream.store.written import WrittenBy

__all__ = ["ANY_VERSION", "PINNED", "ExportKey", "Exports", "export_key"]

ExportKey = tuple[str, str, str, str, str]
"""(dataset, uri, kind, follow_status or '', cid or ''): kind is ``KeyKind.VERSION`` for a
create or an update (a version is its cid, whatever operation or source brought it) and
``KeyKind.DELETE``."""
ANY_VERSION = "*"  # the cid of a key exported before versions were kept: it matches any
PINNED = float("inf")  # the export time of a key whose file was kept in the cache
_PROBE = 5_000  # URIs per lookup statement (SQLite allows 32,766 parameters at least)
# A key whose URI's authority (at://{did}/...) is no user of the population: one the window
# may forget.
_FORGETTABLE = (
    "NOT EXISTS (SELECT 1 FROM users WHERE users.did = "
    "substr(exported_keys.uri, 6, instr(substr(exported_keys.uri, 6), '/') - 1))"
)


def export_key(
    dataset: str, uri: str, operation: str, follow_status: str | None, cid: str | None
) -> ExportKey:
    """The key a row is exported once under: a create and an update of one cid, live or
    backfilled, are the same version of the record, so one row."""
    kind = KeyKind.DELETE if operation == "delete" else KeyKind.VERSION
    return (dataset, uri, kind, follow_status or "", cid or "")


class Exports:
    """Tables ``exported_keys`` and ``export_claims``; the export's numbers in ``meta``."""

    def __init__(self, database: Database, written_by: WrittenBy) -> None:
        self._database = database
        self._db = database.db
        self._written_by = written_by

    def exported_among(self, keys: Iterable[ExportKey]) -> set[ExportKey]:
        """Those of ``keys`` that an earlier export already committed."""
        uris: dict[str, list[str]] = {}  # dataset -> URIs: each probe is a range of the key
        wanted = set(keys)
        for dataset, uri, *_ in wanted:
            uris.setdefault(dataset, []).append(uri)
        versions: dict[tuple[str, ...], list[ExportKey]] = {}  # a key of version 2 has no cid
        for key in wanted:
            versions.setdefault(key[:4], []).append(key)
        found: set[ExportKey] = set()
        for dataset, listed in uris.items():
            for i in range(0, len(listed), _PROBE):
                batch = listed[i : i + _PROBE]
                rows = self._db.execute(
                    "SELECT dataset, uri, operation, follow_status, cid FROM exported_keys "
                    f"WHERE dataset = ? AND uri IN ({','.join('?' * len(batch))})",
                    (dataset, *batch),
                )
                for key in rows:
                    if key in wanted:
                        found.add(key)
                    elif key[4] == ANY_VERSION:
                        found.update(versions.get(key[:4], ()))
        return found

    def commit(
        self,
        claim_id: str | Sequence[str],
        keys: Iterable[ExportKey],
        now: float,
        *,
        pinned: bool = False,
        released: Iterable[ExportKey] = (),
    ) -> None:
        """The export's commit point: its keys and its claim (or a run and its chunks), in one
        transaction.

        ``pinned`` keys stay until ``released``: their files were kept in the cache
        (``--keep-cache``), so however long after, a later export finds them exported. An
        export that removes such a file releases its key, which is then kept for the usual
        window from ``now``.
        """
        stamp = PINNED if pinned else now
        rows = sorted((*key, stamp) for key in keys)  # in key order: fewer B-tree pages touched
        with self._database.transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO exported_keys "
                "(dataset, uri, operation, follow_status, cid, exported_at) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._written_by.add(WriterKind.DATASET, {str(r[0]) for r in rows})
            self._db.executemany(
                "UPDATE exported_keys SET exported_at = ? WHERE dataset = ? AND uri = ? AND operation = ? "
                "AND follow_status = ? AND cid IN (?, '*') AND exported_at > ?",
                ((now, *key, now) for key in released),
            )
            claim_ids = [claim_id] if isinstance(claim_id, str) else claim_id
            self._db.executemany(
                "INSERT OR REPLACE INTO export_claims (claim_id, committed_at) VALUES (?, ?)",
                ((c, now) for c in claim_ids),
            )
            oldest = self._database.meta_real("exported_oldest")
            if oldest is None or oldest > now:
                self._database.set_meta("exported_oldest", now)

    def last_run(self) -> tuple[float, int] | None:
        """When the last export committed, and the number of the last run drawn (each run's
        tables carry it as their application transaction's version); None before any."""
        (committed,) = self._db.execute("SELECT max(committed_at) FROM export_claims").fetchone()
        if committed is None:
            return None
        return float(committed), int(self._database.meta_real("export_version") or 0)

    def claim_committed(self, claim_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM export_claims WHERE claim_id = ?", (claim_id,)).fetchone()
        return row is not None

    def forget_claims(self, claim_ids: Iterable[str]) -> None:
        with self._database.transaction():
            self._db.executemany("DELETE FROM export_claims WHERE claim_id = ?", ((c,) for c in claim_ids))

    def prune(self, older_than: float, *, slack: float = 0.0) -> int:
        """Forget exported keys older than ``older_than`` (the relay's replay window); how
        many were forgotten. The scan runs only once the oldest key it may forget is ``slack``
        seconds past due, so keys are remembered for at least the window and at most ``slack``
        longer.

        The keys of the population's own records (a URI whose authority is a study or
        in-network user) are kept for as long as the account is in the study: a backfill of its
        repository, or a relay's resend, may bring any of its records again however late, and
        a key forgotten would make it a second row. A purge forgets them (``forget_account``).
        """
        oldest = self._database.meta_real("exported_oldest")
        if oldest is None or oldest >= older_than - slack:
            return 0
        with self._database.transaction():
            forgotten: int = self._db.execute(
                f"DELETE FROM exported_keys WHERE exported_at < ? AND {_FORGETTABLE}", (older_than,)
            ).rowcount
            (left,) = self._db.execute(
                f"SELECT min(exported_at) FROM exported_keys WHERE exported_at < ? AND {_FORGETTABLE}",
                (PINNED,),
            ).fetchone()
            self._database.set_meta("exported_oldest", left)
        return forgotten

    def forget_account(self, did: str) -> None:
        """A purged account's keys: the purge removed its rows, so a key would only drop them
        if seen again."""
        prefix = f"at://{did}/"
        with self._database.transaction():
            self._db.execute("DELETE FROM exported_keys WHERE substr(uri, 1, ?) = ?", (len(prefix), prefix))

    def store_id(self) -> str:
        """This store's name in the tables' logs (the app id of its exports' application
        transactions), drawn once: several stores may export into one table."""
        with self._database.transaction():
            value = self._database.meta_real("store_id")
            if value is None:
                value = secrets.randbits(52)  # exact as a REAL too
                self._database.set_meta("store_id", int(value))
        return f"syncstream-{int(value):013x}"

    def record_digest(self, table: str) -> int | None:
        """The digest of the study-record rows last committed to ``table`` by this store."""
        value = self._database.meta_real(f"record_digest:{table}")
        return None if value is None else int(value)

    def set_record_digest(self, table: str, digest: int) -> None:
        with self._database.transaction():
            self._database.set_meta(f"record_digest:{table}", digest)

    def next_version(self) -> int:
        """The version of a new export run's application transactions: it only grows."""
        with self._database.transaction():
            version = int(self._database.meta_real("export_version") or 0) + 1
            self._database.set_meta("export_version", version)
        return version
