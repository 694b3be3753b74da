"""The state store's layout: its tables, its version, and the migrations of earlier versions.

Each migration runs in the opening connection's transaction, statement by statement, and checks
what is there before changing it, so that a store half-way between versions is brought forward.
"""

from __future__ import annotations

import sqlite3
import time

from syncstream.errors import ConfigError

__all__ = ["SCHEMA", "VERSION", "migrate"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    did TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('study', 'in_network')),
    PRIMARY KEY (did, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cached_uris (
    uri TEXT NOT NULL,
    handler_key TEXT NOT NULL,
    indexed_at REAL NOT NULL DEFAULT 0,  -- pruned after the index retention
    PRIMARY KEY (uri, handler_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tracked_follows (
    uri TEXT PRIMARY KEY,  -- a follow made by a study user, seen on the stream
    follower TEXT NOT NULL,
    subject TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS exported_keys (
    dataset TEXT NOT NULL,
    uri TEXT NOT NULL,
    operation TEXT NOT NULL,  -- the key's kind: 'version' (a create or an update) or 'delete'
    follow_status TEXT NOT NULL,  -- '' when the dataset has none
    cid TEXT NOT NULL,  -- the version: '' for a delete; '*' (any) for keys of state version 2
    exported_at REAL NOT NULL,
    PRIMARY KEY (dataset, uri, operation, follow_status, cid)
) WITHOUT ROWID;
-- No index on exported_at: in a WITHOUT ROWID table it would repeat the key and cost as much
-- per export as the table itself; pruning scans instead, and only now and then.
DROP INDEX IF EXISTS exported_keys_age;
CREATE TABLE IF NOT EXISTS export_claims (
    claim_id TEXT PRIMARY KEY,
    committed_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS purged_dids (
    did TEXT PRIMARY KEY,  -- withdrawn or deleted: a user file does not bring it back
    purged_at REAL NOT NULL,
    reason TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending_purges (
    did TEXT PRIMARY KEY,  -- an account seen deleted, purged by the next export
    reason TEXT NOT NULL,
    seq INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS backfills (
    did TEXT PRIMARY KEY,
    status TEXT NOT NULL,  -- done; failed (retried by the next backfill); pending (a #sync)
    rev TEXT,  -- the repository's revision, when done
    reason TEXT,  -- why it failed
    records INTEGER,
    attempts INTEGER NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS purges (
    purge_id TEXT PRIMARY KEY,
    dids TEXT NOT NULL,  -- one per line
    reason TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,  -- null while it runs, or after a crash (the next purge finishes it)
    cache_files INTEGER,
    rows INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chains (
    did TEXT PRIMARY KEY,  -- a verified account
    rev TEXT NOT NULL,  -- the rev of its last verified commit (or of its backfilled repository)
    data BLOB,  -- that commit's MST root (CID bytes)
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS written_by (
    kind TEXT NOT NULL CHECK (kind IN ('handler', 'dataset')),
    name TEXT NOT NULL,  -- a handler that wrote to the cache, a dataset the export wrote
    PRIMARY KEY (kind, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache_home (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    path TEXT NOT NULL  -- the real path of the store's cache (one store, one cache)
);
CREATE TABLE IF NOT EXISTS catalog_outputs (
    location TEXT PRIMARY KEY,  -- an output exported to: a directory's real path, or a URI
    format TEXT NOT NULL,  -- delta or parquet
    app_id TEXT NOT NULL,
    first_run REAL NOT NULL,
    last_run REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS catalog_snapshots (
    location TEXT PRIMARY KEY,  -- a snapshot's directory (its manifest.json in it)
    output TEXT NOT NULL,
    as_of TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,  -- as last issued
    created_at REAL NOT NULL,
    reissued_at REAL  -- the last purge that rewrote it
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS catalog_records (
    location TEXT PRIMARY KEY,  -- a --record replay file
    first_run REAL NOT NULL,
    last_run REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS catalog_scratch (
    location TEXT PRIMARY KEY,  -- a backfill's scratch directory, until it is removed
    did TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS coverage (
    writer_run TEXT NOT NULL,  -- one writer process's run
    number INTEGER NOT NULL,  -- the row's place in that run
    source TEXT NOT NULL,  -- whose seqs: the cursor's key ('cursor', or 'cursor:{relay host}')
    kind TEXT NOT NULL CHECK (kind IN ('covered', 'gap')),
    first_seq INTEGER,
    last_seq INTEGER,
    first_time TEXT,  -- the relay's time of a frame at each end, as it wrote it
    last_time TEXT,
    reason TEXT NOT NULL,
    frames INTEGER NOT NULL,
    PRIMARY KEY (writer_run, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS membership (
    spell_id INTEGER PRIMARY KEY,
    did TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('study', 'in_network')),
    source TEXT NOT NULL,  -- whose seqs from_seq and to_seq are
    from_seq INTEGER NOT NULL,
    to_seq INTEGER,  -- null while the account is in
    from_time TEXT,
    to_time TEXT,
    how TEXT NOT NULL,  -- how it came in
    left_how TEXT  -- how it went out
);
CREATE INDEX IF NOT EXISTS membership_open ON membership (did, role) WHERE to_seq IS NULL;
CREATE TABLE IF NOT EXISTS withdrawals (
    purge_id TEXT NOT NULL,  -- what is left of a purged account's spells: counts, no DID
    role TEXT NOT NULL,
    reason TEXT NOT NULL,
    accounts INTEGER NOT NULL,
    withdrawn_at REAL NOT NULL,
    PRIMARY KEY (purge_id, role)
) WITHOUT ROWID;
"""

VERSION = 6
"""The state's layout: 2 keeps handler keys by name in ``cached_uris`` (1 kept directories);
3 keys exported rows by version (cid) too, and dates index rows for their retention; 4 keys a
create and an update of one cid as one version (``operation`` holds 'version' or 'delete'); 5
remembers the handlers and datasets that wrote (``written_by``). 6 keeps each verified
account's chain, its last verified rev and MST root (``chains``; new, empty: nothing to migrate),
and records the cache a store belongs to (``cache_home``, set by its first writer), and
catalogues every copy the store makes outside itself (``catalog_*``: outputs, snapshots,
record files, backfill scratch); a store of version 5 starts with an empty catalog, filled by
its next export, snapshot, writer and backfill; and keeps the study's record: what seqs each
writer run covered and lost (``coverage``) and who was in the population from which seq to which
(``membership``, ``withdrawals``), new tables too (a store of 5 has no record of its past; its
next writer opens the spells of who is in)."""

# What version 1 stored for each handler key: the handler's directory, as the key's value was.
_VERSION_1_KEYS = {
    "study_user_activity/create/post": "post",
    "study_user_activity/create/like": "like",
    "study_user_activity/create/follow/follower": "follow_follower",
    "study_user_activity/create/follow/followee": "follow_followee",
    "study_user_activity/create/like_on_user_post": "like_on_user_post",
    "study_user_activity/create/reply_to_user_post": "reply_to_user_post",
    "study_user_activity/delete/post": "delete_post",
    "study_user_activity/delete/like": "delete_like",
    "study_user_activity/delete/follow/follower": "delete_follow_follower",
    "study_user_activity/delete/follow/followee": "delete_follow_followee",
    "study_user_activity/delete/like_on_user_post": "delete_like_on_user_post",
    "study_user_activity/delete/reply_to_user_post": "delete_reply_to_user_post",
    "in_network_user_activity/create/post": "in_network_post",
    "in_network_user_activity/delete/post": "in_network_delete_post",
}

# Version 3: keys gain their cid (earlier keys match any version: '*'); index rows a date.
_VERSION_3 = (
    "ALTER TABLE exported_keys RENAME TO exported_keys_2",
    """CREATE TABLE exported_keys (
        dataset TEXT NOT NULL,
        uri TEXT NOT NULL,
        operation TEXT NOT NULL,
        follow_status TEXT NOT NULL,
        cid TEXT NOT NULL,
        exported_at REAL NOT NULL,
        PRIMARY KEY (dataset, uri, operation, follow_status, cid)
    ) WITHOUT ROWID""",
    "INSERT INTO exported_keys (dataset, uri, operation, follow_status, cid, exported_at) "
    "SELECT dataset, uri, operation, follow_status, '*', exported_at FROM exported_keys_2",
    "DROP TABLE exported_keys_2",
)  # one by one, in the migration's transaction (executescript would commit it)


# Version 4: a create's and an update's keys of one cid become one 'version' key, the latest
# export time kept (a key pinned by --keep-cache stays pinned).
_VERSION_4 = (
    "INSERT INTO exported_keys (dataset, uri, operation, follow_status, cid, exported_at) "
    "SELECT dataset, uri, 'version', follow_status, cid, max(exported_at) "
    "FROM exported_keys WHERE operation IN ('create', 'update') GROUP BY dataset, uri, follow_status, cid "
    "ON CONFLICT DO UPDATE SET exported_at = max(exported_at, excluded.exported_at)",
    "DELETE FROM exported_keys WHERE operation IN ('create', 'update')",
)


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def migrate(db: sqlite3.Connection, path: str) -> int:
    """Bring a store of an earlier layout to ``VERSION`` (inside the caller's transaction);
    the version it had. ``ConfigError`` for a store of a newer layout."""
    row = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    version = 1 if row is None else int(row[0])
    if version > VERSION:
        raise ConfigError(
            f"{path} was written by a newer syncstream (state version {version}, "
            f"this one reads {VERSION}); upgrade syncstream"
        )
    if version < 2:
        db.executemany(
            "UPDATE cached_uris SET handler_key = ? WHERE handler_key = ?",
            ((name, directory) for directory, name in _VERSION_1_KEYS.items()),
        )
    if version < 3:
        if "cid" not in _columns(db, "exported_keys"):
            for statement in _VERSION_3:
                db.execute(statement)
        if "indexed_at" not in _columns(db, "cached_uris"):
            db.execute("ALTER TABLE cached_uris ADD COLUMN indexed_at REAL NOT NULL DEFAULT 0")
        db.execute("UPDATE cached_uris SET indexed_at = ?", (time.time(),))
    if version < 4:
        for statement in _VERSION_4:
            db.execute(statement)
    if version < 5:  # what an earlier store shows of who wrote: its index, its exported keys
        db.execute(
            "INSERT OR IGNORE INTO written_by (kind, name) "
            "SELECT DISTINCT 'handler', handler_key FROM cached_uris"
        )
        db.execute(
            "INSERT OR IGNORE INTO written_by (kind, name) "
            "SELECT DISTINCT 'dataset', dataset FROM exported_keys"
        )
    return version
