"""State files of the first layout (handler directories in the index) are migrated to stable
handler names when opened, and then route deletes as before."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from syncstream.errors import ConfigError
from syncstream.firehose.encode import OpSpec
from syncstream.registry.types import HandlerKey as K
from syncstream.store import VERSION, StateStore, export_key
from syncstream.write.__main__ import main as write_main
from tests.helpers import commit, tree, write_replay, write_users

STUDY, STRANGER = "did:plc:study", "did:plc:stranger"
LIKE_URI = f"at://{STRANGER}/app.bsky.feed.like/3l1"
FOLLOW_URI = f"at://{STRANGER}/app.bsky.graph.follow/3f1"


VERSION_1_SCHEMA = """
CREATE TABLE users (did TEXT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (did, kind)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;
CREATE TABLE cached_uris (uri TEXT NOT NULL, handler_key TEXT NOT NULL, PRIMARY KEY (uri, handler_key))
    WITHOUT ROWID;
CREATE TABLE tracked_follows (uri TEXT PRIMARY KEY, follower TEXT NOT NULL, subject TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE exported_keys (dataset TEXT NOT NULL, uri TEXT NOT NULL, operation TEXT NOT NULL,
    follow_status TEXT NOT NULL, exported_at REAL NOT NULL,
    PRIMARY KEY (dataset, uri, operation, follow_status)) WITHOUT ROWID;
CREATE TABLE export_claims (claim_id TEXT PRIMARY KEY, committed_at REAL NOT NULL) WITHOUT ROWID;
"""


def version_1_store(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A store as the first layout left it: no version, directories as handler keys."""
    with closing(sqlite3.connect(path)) as db, db:
        db.executescript(VERSION_1_SCHEMA)
        db.execute("INSERT INTO meta (key, value) VALUES ('cursor', 41)")
        db.execute("INSERT INTO users (did, kind) VALUES (?, 'study')", (STUDY,))
        db.executemany("INSERT INTO cached_uris (uri, handler_key) VALUES (?, ?)", rows)
    return path


def stored(path: Path) -> set[tuple[str, str]]:
    with closing(sqlite3.connect(path)) as db:
        return set(db.execute("SELECT uri, handler_key FROM cached_uris"))


def test_directories_become_handler_names(tmp_path: Path) -> None:
    """Every directory of the first layout is rewritten to its key's name, once; the rest stays."""
    path = version_1_store(
        tmp_path / "s.sqlite",
        [
            (LIKE_URI, "study_user_activity/create/like_on_user_post"),
            (FOLLOW_URI, "study_user_activity/create/follow/followee"),
            (f"at://{STUDY}/app.bsky.feed.post/3p", "study_user_activity/create/post"),
            (f"at://{STUDY}/app.bsky.feed.post/3p", "in_network_user_activity/create/post"),
        ],
    )
    with StateStore(path) as state:
        assert state.cursors.get() == 41
        assert state.index.handlers_of([LIKE_URI, FOLLOW_URI, f"at://{STUDY}/app.bsky.feed.post/3p"]) == {
            LIKE_URI: frozenset({K.LIKE_ON_USER_POST}),
            FOLLOW_URI: frozenset({K.FOLLOW_FOLLOWEE}),
            f"at://{STUDY}/app.bsky.feed.post/3p": frozenset({K.POST, K.IN_NETWORK_POST}),
        }
        # what the index shows of the handlers that wrote is remembered (state version 4)
        handlers, datasets = state.written_by.names()
        assert handlers == {"like_on_user_post", "follow_followee", "post", "in_network_post"}
        assert datasets == frozenset()
    assert stored(path) == {
        (LIKE_URI, "like_on_user_post"),
        (FOLLOW_URI, "follow_followee"),
        (f"at://{STUDY}/app.bsky.feed.post/3p", "post"),
        (f"at://{STUDY}/app.bsky.feed.post/3p", "in_network_post"),
    }
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone() == (VERSION,)
    StateStore(path).close()  # opened again: nothing left to migrate
    assert len(stored(path)) == 4


def test_a_migrated_index_still_routes_deletes(tmp_path: Path) -> None:
    """A stranger's delete of a like cached under the first layout lands in delete/like_on_user_post."""
    state = version_1_store(
        tmp_path / "s.sqlite", [(LIKE_URI, "study_user_activity/create/like_on_user_post")]
    )
    replay = write_replay(
        tmp_path / "r.bin", [commit(42, STRANGER, OpSpec("delete", "app.bsky.feed.like/3l1"))]
    )
    args = ["--cache-dir", str(tmp_path / "cache"), "--state", str(state), "--replay", str(replay), "-q"]
    assert write_main([*args, "--study-users", str(write_users(tmp_path / "study.txt", [STUDY]))]) == 0
    assert tree(tmp_path / "cache") == {
        "study_user_activity/delete/like_on_user_post/author_did=did:plc:stranger_like_uri_suffix=3l1.json"
    }


def test_index_rows_come_back_by_name(tmp_path: Path) -> None:
    """The index keeps handler names, any string, and gives them back as it holds them: the
    registry maps them to its handlers (a name it lacks is passed over by routing)."""
    with StateStore(tmp_path / "s.sqlite") as state:
        state.commit(1, [(LIKE_URI, K.LIKE_ON_USER_POST)])
        with closing(sqlite3.connect(tmp_path / "s.sqlite")) as db, db:
            db.execute("INSERT INTO cached_uris (uri, handler_key) VALUES (?, 'gone')", (LIKE_URI,))
        assert state.index.handlers_of([LIKE_URI]) == {LIKE_URI: frozenset({"like_on_user_post", "gone"})}


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    """A store written by a newer layout is a clear error, not a silent misreading."""
    path = version_1_store(tmp_path / "s.sqlite", [])
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("INSERT INTO meta (key, value) VALUES ('version', ?)", (VERSION + 1,))
    with pytest.raises(ConfigError, match=f"newer syncstream \\(state version {VERSION + 1}"):
        StateStore(path)


def test_keys_exported_before_versions_match_any_version(tmp_path: Path) -> None:
    """A key the first layouts exported (no cid) still marks its record exported, whatever its
    cid, so a --keep-cache file is not exported twice after the upgrade; a new cid of another
    URI is not matched."""
    path = version_1_store(tmp_path / "s.sqlite", [])
    with closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "INSERT INTO exported_keys (dataset, uri, operation, follow_status, exported_at) "
            "VALUES ('study_user_activity/post', ?, 'create', '', ?)",
            (f"at://{STUDY}/app.bsky.feed.post/3p", float("inf")),
        )
    with StateStore(path) as state:
        old = export_key(
            "study_user_activity/post", f"at://{STUDY}/app.bsky.feed.post/3p", "create", "", "bafyreiany"
        )
        other = export_key(
            "study_user_activity/post", f"at://{STUDY}/app.bsky.feed.post/3q", "create", "", "bafyreiany"
        )
        assert state.exports.exported_among([old, other]) == {old}
        state.exports.commit("c1", [], 1000.0, released=[old])  # the file is removed: the key ages
        # ... and, a study user's, it is kept for the study's life (no window forgets it)
        assert state.exports.prune(2000.0) == 0 and state.exports.exported_among([old]) == {old}
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("DELETE FROM users")  # the account left the population (no purge)
        state.exports.commit("c2", [], 1500.0)  # a later run: the scan is due a window after it
        assert state.exports.prune(2000.0) == 1 and state.exports.exported_among([old]) == set()


def test_version_3_keys_of_one_cid_become_one_version(tmp_path: Path) -> None:
    """A create and an update of one cid, exported under state version 3 as two keys, are one
    version after the upgrade (a pinned key stays pinned); deletes keep their own kind."""
    path = tmp_path / "s.sqlite"
    StateStore(path).close()
    uri = f"at://{STUDY}/app.bsky.feed.post/3p"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE meta SET value = 3 WHERE key = 'version'")
        db.executemany(
            "INSERT INTO exported_keys (dataset, uri, operation, follow_status, cid, exported_at) "
            "VALUES ('study_user_activity/post', ?, ?, '', ?, ?)",
            [
                (uri, "create", "bafyc0", 100.0),
                (uri, "update", "bafyc0", float("inf")),
                (uri, "update", "bafyc1", 200.0),
                (uri, "delete", "", 300.0),
            ],
        )
    with closing(sqlite3.connect(path)) as db:
        StateStore(path).close()
        rows = sorted(db.execute("SELECT operation, cid, exported_at FROM exported_keys"))
    assert rows == [("delete", "", 300.0), ("version", "bafyc0", float("inf")), ("version", "bafyc1", 200.0)]


def test_a_newer_store_is_refused_before_anything_is_changed(tmp_path: Path) -> None:
    """The writer given a store of a newer layout exits 2 and leaves the file as it was: the
    same bytes, its journal mode, its tables and indexes, no WAL beside it."""
    path = version_1_store(tmp_path / "s.sqlite", [])
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("INSERT INTO meta (key, value) VALUES ('version', ?)", (VERSION + 1,))
        db.execute("CREATE INDEX exported_keys_age ON meta (value)")  # one an opening would drop
    before = path.read_bytes()
    args = ["--cache-dir", str(tmp_path / "cache"), "--state", str(path), "-q", "--no-sync"]
    args += [
        "--replay",
        str(write_replay(tmp_path / "r.bin", [])),
        "--study-users",
        str(write_users(tmp_path / "u.txt", [])),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "syncstream.write", *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2, result.stderr
    assert path.read_bytes() == before
    assert "newer syncstream" in result.stderr and "was not changed" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("s.sqlite")) == ["s.sqlite"]
