"""The embedded state store (SQLite, WAL): population, cursor, and the cached-URI index.

The cursor and the index rows of a batch are committed in one transaction, after the cache
files of that batch are durable: a crash before the commit replays the batch, which rewrites
the same file names and the same index rows.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from syncstream.errors import ConfigError
from syncstream.registry.population import Population
from syncstream.state_layout import SCHEMA, VERSION, migrate

__all__ = [
    "CURSOR",
    "VERSION",
    "ExportKey",
    "PurgeRecord",
    "StateStore",
    "export_key",
    "relay_cursor",
]

ExportKey = tuple[str, str, str, str, str]
"""(dataset, uri, kind, follow_status or '', cid or ''): kind is ``version`` for a create or an
update (a version is its cid, whatever operation or source brought it) and ``delete``."""
ANY_VERSION = "*"  # the cid of a key exported before versions were kept: it matches any
VERSION_KIND, DELETE_KIND = "version", "delete"


def export_key(
    dataset: str, uri: str, operation: str, follow_status: str | None, cid: str | None
) -> ExportKey:
    """The key a row is exported once under: a create and an update of one cid, live or
    backfilled, are the same version of the record, so one row."""
    kind = DELETE_KIND if operation == "delete" else VERSION_KIND
    return (dataset, uri, kind, follow_status or "", cid or "")


CURSOR = "cursor"  # a replay's cursor; a relay's is relay_cursor(host)


def relay_cursor(url: str) -> str:
    """The state's key of a relay's cursor: its host (seqs are a relay's own)."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    return f"cursor:{host}"


PINNED = float("inf")  # the export time of a key whose file was kept in the cache
_PROBE = 5_000  # URIs per lookup statement (SQLite allows 32,766 parameters at least)


class PurgeRecord(NamedTuple):
    purge_id: str
    dids: tuple[str, ...]
    reason: str  # "withdrawal" or "deleted account"
    started_at: float
    finished_at: float | None
    cache_files: int | None
    rows: int | None


class StateStore:
    """One SQLite connection. Transactions are short: the writer keeps a batch's index rows in
    memory and commits them with the cursor, so an export beside it never waits long."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        """Open the store at ``path``, creating it with ``create`` (the writer's part); else a
        missing or empty file is refused. ``ConfigError`` when it is not a store; a file that
        is not one is left as it was."""
        self.path = str(path)
        if not create and not os.path.isfile(self.path):
            raise ConfigError(
                f"no state store at {os.path.abspath(self.path)}: only the writer creates one "
                "(python -m syncstream.write); check --state"
            )
        try:
            # Read-write without create: a store that vanished meanwhile is not made anew.
            target = self.path if create else f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=rw"
            self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, uri=not create)
        except sqlite3.Error as error:
            raise ConfigError(f"cannot open the state store {self.path}: {error}") from None
        try:
            self._db.execute("PRAGMA busy_timeout=30000")
            listed = self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = {name for (name,) in listed}
            if tables and "meta" not in tables:
                raise ConfigError(
                    f"{self.path} is an SQLite database but not a syncstream state store "
                    f"(it has tables {', '.join(sorted(tables)[:5])}); give another --state"
                )
            if not tables and not create:
                raise ConfigError(
                    f"{self.path} is not a syncstream state store (it is empty): only the writer "
                    "creates one (python -m syncstream.write); check --state"
                )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            if tables:
                self._migrate()
            else:
                with self._transaction():
                    self._set_meta("version", VERSION)
        except sqlite3.Error as error:
            self._db.close()
            raise ConfigError(f"{self.path} is not a syncstream state store ({error})") from None
        except ConfigError:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        """Bring a store of an earlier layout to ``VERSION``, in one transaction."""
        with self._transaction():
            if migrate(self._db, self.path) < VERSION:
                self._set_meta("version", VERSION)

    # population ---------------------------------------------------------------------------

    def replace_users(self, kind: str, dids: Iterable[str]) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM users WHERE kind = ?", (kind,))
            self._db.executemany(
                "INSERT OR IGNORE INTO users (did, kind) VALUES (?, ?)", ((d, kind) for d in dids)
            )

    def population(self, *, tracked_follows: bool = False) -> Population:
        """The study and in-network sets; with ``tracked_follows``, the in-network set also
        holds every account a study user was seen following on the stream."""
        rows = self._db.execute("SELECT did, kind FROM users").fetchall()
        in_network = {d for d, k in rows if k == "in_network"}
        if tracked_follows:
            in_network.update(s for (s,) in self._db.execute("SELECT subject FROM tracked_follows"))
        return Population(
            study=frozenset(d for d, k in rows if k == "study"),
            in_network=frozenset(in_network),
            withdrawn=self.purged_dids(),
        )

    def tracked_follows(self) -> dict[str, tuple[str, str]]:
        """Follow URI -> (follower, subject) for the follows study users were seen making."""
        rows = self._db.execute("SELECT uri, follower, subject FROM tracked_follows")
        return {uri: (follower, subject) for uri, follower, subject in rows}

    # cursor -------------------------------------------------------------------------------

    def cursor(self, source: str = CURSOR) -> int | None:
        """The last durable seq of ``source``: ``CURSOR`` for replays, ``relay_cursor(host)``
        for a relay, whose seqs are its own. A relay with no cursor yet takes the single
        cursor of a store written before cursors were kept per relay, once."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (source,)).fetchone()
        if row is None and source != CURSOR:
            per_relay = self._db.execute("SELECT 1 FROM meta WHERE key LIKE 'cursor:%'").fetchone()
            if per_relay is None:
                row = self._db.execute("SELECT value FROM meta WHERE key = ?", (CURSOR,)).fetchone()
        return None if row is None else int(row[0])

    def set_cursor(self, seq: int, source: str = CURSOR) -> None:
        self.commit(seq, cursor_source=source)

    # cached-URI index ---------------------------------------------------------------------

    def cached_keys(self, uris: Iterable[str]) -> Mapping[str, frozenset[str]]:
        """The names of the handlers each URI was cached under (URIs never cached are absent).
        Names are the registry's keys: routing maps them back through its own registry."""
        found: dict[str, set[str]] = {}
        for uri in uris:
            for (name,) in self._db.execute("SELECT handler_key FROM cached_uris WHERE uri = ?", (uri,)):
                found.setdefault(uri, set()).add(name)
        return {uri: frozenset(names) for uri, names in found.items()}

    def commit(
        self,
        cursor: int | None,
        index: Iterable[tuple[str, str]] = (),
        follows: Mapping[str, tuple[str, str] | None] | None = None,
        *,
        account_purges: Mapping[str, tuple[int, str | None]] | None = None,
        population_version: int | None = None,
        cursor_source: str = "cursor",
        resync: Iterable[str] = (),
        written: Iterable[str] = (),
    ) -> None:
        """Commit a batch's index rows, tracked-follow changes (URI -> (follower, subject), or
        None when unfollowed), the purges its account events decided (DID -> (seq, reason): an
        account to purge at the next export, or None when reactivated before it was), the
        handlers that ``written`` files for the first time, and the cursor that covers them, in
        one short transaction.

        Call it only once the batch's cache files are durable.
        """
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO cached_uris (uri, handler_key, indexed_at) VALUES (?, ?, ?)",
                ((uri, str(key), now) for uri, key in index),
            )
            for uri, follow in (follows or {}).items():
                if follow is None:
                    self._db.execute("DELETE FROM tracked_follows WHERE uri = ?", (uri,))
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO tracked_follows VALUES (?, ?, ?)", (uri, *follow)
                    )
            for did, (seq, reason) in (account_purges or {}).items():
                if reason is None:
                    self._db.execute("DELETE FROM pending_purges WHERE did = ?", (did,))
                else:
                    self._db.execute(
                        "INSERT OR IGNORE INTO pending_purges VALUES (?, ?, ?)", (did, reason, seq)
                    )
            if population_version is not None:
                self._set_meta("writer_population_version", population_version)
            self._db.executemany(  # a #sync: the repository must be fetched again
                "INSERT INTO backfills (did, status, attempts, updated_at) VALUES (?, 'pending', 0, ?) "
                "ON CONFLICT (did) DO UPDATE SET status = 'pending', updated_at = excluded.updated_at",
                ((did, now) for did in resync),
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO written_by VALUES ('handler', ?)", ((str(n),) for n in written)
            )
            if cursor is not None:
                self._set_meta(cursor_source, cursor)

    def written_by(self) -> tuple[frozenset[str], frozenset[str]]:
        """The names of every handler that has written to the cache and every dataset the export
        has written, ever: a registry without one of them would lose or leak what they hold."""
        rows = self._db.execute("SELECT kind, name FROM written_by").fetchall()
        return (
            frozenset(name for kind, name in rows if kind == "handler"),
            frozenset(name for kind, name in rows if kind == "dataset"),
        )

    def prune_index(self, older_than: float) -> int:
        """Forget index rows written before ``older_than`` (the index retention): a delete of
        such a record by another account is no longer routed. How many were forgotten."""
        with self._transaction():
            forgotten: int = self._db.execute(
                "DELETE FROM cached_uris WHERE indexed_at < ?", (older_than,)
            ).rowcount
        return forgotten

    def index_rows(self) -> int:
        (count,) = self._db.execute("SELECT count(*) FROM cached_uris").fetchone()
        return int(count)

    # backfills ----------------------------------------------------------------------------

    def backfills(self) -> dict[str, tuple[str, str | None, str | None, int]]:
        """DID -> (status, rev, reason, attempts) of every backfill recorded."""
        rows = self._db.execute("SELECT did, status, rev, reason, attempts FROM backfills")
        return {did: (status, rev, reason, attempts) for did, status, rev, reason, attempts in rows}

    def backfills_due(self, dids: Iterable[str], now: float, *, force: bool = False) -> list[str]:
        """Those of ``dids`` to backfill now: never done, pending (a #sync), or failed and past
        their backoff (1 minute after the first failure, doubling, at most a day); with
        ``force``, all of them."""
        rows = self._db.execute("SELECT did, status, attempts, updated_at FROM backfills").fetchall()
        recorded = {did: (status, attempts, updated) for did, status, attempts, updated in rows}
        due = []
        for did in dids:
            status, attempts, updated = recorded.get(did, ("", 0, 0.0))
            waited = now - updated >= min(60.0 * 2 ** max(attempts - 1, 0), 86_400.0)
            if force or status in ("", "pending") or (status == "failed" and waited):
                due.append(did)
        return due

    def record_backfill(
        self, did: str, *, rev: str | None = None, reason: str | None = None, records: int | None = None
    ) -> None:
        """A DID's backfill is done at ``rev`` (with ``records``), or failed for ``reason``."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO backfills VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT (did) DO UPDATE SET "
                "status = excluded.status, rev = excluded.rev, reason = excluded.reason, "
                "records = excluded.records, attempts = attempts + 1, updated_at = excluded.updated_at",
                (did, "failed" if reason is not None else "done", rev, reason, records, time.time()),
            )

    # purges -------------------------------------------------------------------------------

    def purged_dids(self) -> frozenset[str]:
        return frozenset(did for (did,) in self._db.execute("SELECT did FROM purged_dids"))

    def reenrol(self, dids: Iterable[str]) -> None:
        """Let purged DIDs be enrolled again (by the user files loaded next), from a clean
        slate: their repositories are backfilled again and none of their records counts as
        exported (the purge took them out of the output)."""
        with self._transaction():
            for did in dids:
                if self._db.execute("DELETE FROM purged_dids WHERE did = ?", (did,)).rowcount:
                    self._forget_account(did)  # (a DID that was not purged keeps its history)

    def _forget_account(self, did: str) -> None:
        """What the store remembers of an account's records: its backfill and its exported
        keys (a purge removed the rows, so a key would only drop them if seen again)."""
        self._db.execute("DELETE FROM backfills WHERE did = ?", (did,))
        prefix = f"at://{did}/"
        self._db.execute("DELETE FROM exported_keys WHERE substr(uri, 1, ?) = ?", (len(prefix), prefix))

    def begin_purge(self, purge_id: str, dids: Iterable[str], reason: str, now: float) -> None:
        """The purge's first step, one transaction: the DIDs leave the population for good
        (remembered as purged, their tracked follows and pending purges gone) and the purge is
        recorded as running. A writer sees the new population at its next flush."""
        dids = sorted(set(dids))
        with self._transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO purges (purge_id, dids, reason, started_at) VALUES (?, ?, ?, ?)",
                (purge_id, "\n".join(dids), reason, now),
            )
            for did in dids:
                self._db.execute("DELETE FROM users WHERE did = ?", (did,))
                self._db.execute("INSERT OR IGNORE INTO purged_dids VALUES (?, ?, ?)", (did, now, reason))
                self._db.execute("DELETE FROM tracked_follows WHERE follower = ? OR subject = ?", (did, did))
                self._db.execute("DELETE FROM pending_purges WHERE did = ?", (did,))
            version = self._meta_real("population_version") or 0
            self._set_meta("population_version", int(version) + 1)

    def finish_purge(
        self, purge_id: str, *, uris: Iterable[str], cache_files: int, rows: int, now: float
    ) -> None:
        """The purge's last step: the index forgets the purged URIs, the store the accounts'
        backfills and exported keys; the purge is recorded done."""
        with self._transaction():
            self._db.executemany("DELETE FROM cached_uris WHERE uri = ?", ((u,) for u in uris))
            (dids,) = self._db.execute("SELECT dids FROM purges WHERE purge_id = ?", (purge_id,)).fetchone()
            for did in dids.split("\n"):
                self._forget_account(did)
            self._db.execute(
                "UPDATE purges SET finished_at = ?, cache_files = ?, rows = ? WHERE purge_id = ?",
                (now, cache_files, rows, purge_id),
            )

    def purges(self, *, unfinished: bool = False) -> list[PurgeRecord]:
        query = "SELECT * FROM purges" + (" WHERE finished_at IS NULL" if unfinished else "")
        return [
            PurgeRecord(purge_id, tuple(dids.split("\n")), reason, started, finished, files, rows)
            for purge_id, dids, reason, started, finished, files, rows in self._db.execute(
                query + " ORDER BY 1"
            )
        ]

    def pending_purges(self) -> dict[str, tuple[int | None, str]]:
        """Population DIDs seen deleted or taken down, not purged yet -> (the seq of the
        event, the purge's reason)."""
        rows = self._db.execute("SELECT did, seq, reason FROM pending_purges")
        return {did: (seq, reason) for did, seq, reason in rows}

    def population_version(self) -> int:
        return int(self._meta_real("population_version") or 0)

    def seen_population(self) -> int:
        """The population version a running writer last applied (committed with its cursor)."""
        return int(self._meta_real("writer_population_version") or 0)

    # export bookkeeping -------------------------------------------------------------------

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

    def commit_export(
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
        with self._transaction():
            self._db.executemany("INSERT OR IGNORE INTO exported_keys VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.executemany(
                "INSERT OR IGNORE INTO written_by VALUES ('dataset', ?)", ((d,) for d in {r[0] for r in rows})
            )
            self._db.executemany(
                "UPDATE exported_keys SET exported_at = ? WHERE dataset = ? AND uri = ? AND operation = ? "
                "AND follow_status = ? AND cid IN (?, '*') AND exported_at > ?",
                ((now, *key, now) for key in released),
            )
            claim_ids = [claim_id] if isinstance(claim_id, str) else claim_id
            self._db.executemany(
                "INSERT OR REPLACE INTO export_claims VALUES (?, ?)", ((c, now) for c in claim_ids)
            )
            oldest = self._meta_real("exported_oldest")
            if oldest is None or oldest > now:
                self._set_meta("exported_oldest", now)

    def claim_committed(self, claim_id: str) -> bool:
        row = self._db.execute("SELECT 1 FROM export_claims WHERE claim_id = ?", (claim_id,)).fetchone()
        return row is not None

    def forget_claims(self, claim_ids: Iterable[str]) -> None:
        with self._transaction():
            self._db.executemany("DELETE FROM export_claims WHERE claim_id = ?", ((c,) for c in claim_ids))

    def prune_exported(self, older_than: float, *, slack: float = 0.0) -> int:
        """Forget exported keys older than ``older_than`` (the relay's replay window); how
        many were forgotten. The scan runs only once the oldest key is ``slack`` seconds past
        due, so keys are remembered for at least the window and at most ``slack`` longer."""
        oldest = self._meta_real("exported_oldest")
        if oldest is None or oldest >= older_than - slack:
            return 0
        with self._transaction():
            forgotten: int = self._db.execute(
                "DELETE FROM exported_keys WHERE exported_at < ?", (older_than,)
            ).rowcount
            (left,) = self._db.execute(
                "SELECT min(exported_at) FROM exported_keys WHERE exported_at < ?", (PINNED,)
            ).fetchone()
            self._set_meta("exported_oldest", left)
        return forgotten

    def store_id(self) -> str:
        """This store's name in the tables' logs (the app id of its exports' application
        transactions), drawn once: several stores may export into one table."""
        with self._transaction():
            value = self._meta_real("store_id")
            if value is None:
                value = secrets.randbits(52)  # exact as a REAL too
                self._set_meta("store_id", int(value))
        return f"syncstream-{int(value):013x}"

    def next_export_version(self) -> int:
        """The version of a new export run's application transactions: it only grows."""
        with self._transaction():
            version = int(self._meta_real("export_version") or 0) + 1
            self._set_meta("export_version", version)
        return version

    def _meta_real(self, key: str) -> float | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def _set_meta(self, key: str, value: float | int | None) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _transaction(self, *, temp_only: bool = False) -> _Transaction:
        return _Transaction(self, "BEGIN" if temp_only else "BEGIN IMMEDIATE")


class _Transaction:
    def __init__(self, store: StateStore, begin: str) -> None:
        self.db = store._db
        self.begin = begin

    def __enter__(self) -> None:
        self.db.execute(self.begin)

    def __exit__(self, kind: object, value: object, tb: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
