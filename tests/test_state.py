"""The SQLite state store: user files, population, cursor, cached-URI index."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from returns.result import Failure, Success

from syncstream.registry.population import Population
from syncstream.registry.types import HandlerKey
from syncstream.store import BackfillStatus, PurgeReason, StateStore, UserKind
from syncstream.users import read_user_file


def test_user_file_with_comments_and_blanks(tmp_path: Path) -> None:
    """DIDs are read one per line; comments and blank lines are skipped."""
    path = tmp_path / "users.txt"
    path.write_text("# study\ndid:plc:aaa\n\n  did:web:example.com  # trailing comment\n")
    assert read_user_file(path) == Success(["did:plc:aaa", "did:web:example.com"])


def test_invalid_did_names_file_and_line(tmp_path: Path) -> None:
    """An invalid DID is an error naming the file and the line number."""
    path = tmp_path / "users.txt"
    path.write_text("did:plc:aaa\n# ok\nnot-a-did\n")
    assert read_user_file(path) == Failure(f"{path}:3: not a valid DID: 'not-a-did'")


def test_unreadable_user_file_is_a_failure(tmp_path: Path) -> None:
    """A missing file is a Failure with a message, not an exception."""
    result = read_user_file(tmp_path / "missing.txt")
    assert isinstance(result, Failure)
    assert "cannot read user file" in result.failure()


def test_population_replaced_per_kind(tmp_path: Path) -> None:
    """Loading a kind replaces that kind only, and survives reopening the store."""
    with StateStore(tmp_path / "s.sqlite") as state:
        state.population.replace(UserKind.STUDY, ["did:plc:a", "did:plc:b"])
        state.population.replace(UserKind.IN_NETWORK, ["did:plc:c"])
        state.population.replace(UserKind.STUDY, ["did:plc:b"])
    with StateStore(tmp_path / "s.sqlite") as again:
        assert again.population.current() == Population(frozenset({"did:plc:b"}), frozenset({"did:plc:c"}))


def test_cursor_is_64_bit_and_uses_wal(tmp_path: Path) -> None:
    """Sequence numbers above 2**34 (and 2**62) survive; the journal is WAL."""
    path = tmp_path / "s.sqlite"
    with StateStore(path) as state:
        assert state.cursors.get() is None
        state.cursors.set(31_527_015_471)
        assert state.cursors.get() == 31_527_015_471
        state.cursors.set(2**62 + 7)
    with StateStore(path) as reopened:
        assert reopened.cursors.get() == 2**62 + 7
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_index_rows_and_cursor_commit_together(tmp_path: Path) -> None:
    """A batch's index rows and its cursor land in one commit, and survive reopening."""
    path = tmp_path / "s.sqlite"
    with StateStore(path) as state:
        uri = "at://did:plc:a/app.bsky.feed.post/1"
        state.commit(
            42, [(uri, HandlerKey.POST), (uri, HandlerKey.REPLY_TO_USER_POST), (uri, HandlerKey.POST)]
        )
    with StateStore(path) as state:
        assert state.cursors.get() == 42
        assert state.index.handlers_of([uri, "at://x"]) == {
            uri: frozenset({HandlerKey.POST, HandlerKey.REPLY_TO_USER_POST})
        }


def test_exported_keys_are_remembered_for_the_window_and_then_forgotten(tmp_path: Path) -> None:
    """A key stays exported for at least the window, and a prune past window + slack forgets it."""
    with StateStore(tmp_path / "state.sqlite") as state:
        old = ("study_user_activity/post", "at://did:plc:a/app.bsky.feed.post/1", "create", "", "bafyreia")
        new = ("study_user_activity/post", "at://did:plc:a/app.bsky.feed.post/2", "create", "", "bafyreib")
        state.exports.commit("c1", [old], now=1000.0)
        state.exports.commit("c2", [new], now=5000.0)
        assert state.exports.exported_among([old, new]) == {old, new}
        assert state.exports.prune(900.0, slack=50.0) == 0  # nothing is past due
        assert state.exports.prune(1040.0, slack=50.0) == 0  # past the window, within the slack
        assert state.exports.exported_among([old]) == {old}
        assert state.exports.prune(2000.0, slack=50.0) == 1
        assert state.exports.exported_among([old, new]) == {new}
        assert state.exports.prune(2000.0, slack=50.0) == 0  # the oldest left is new's time
        assert state.exports.prune(6000.0) == 1
        assert state.exports.exported_among([old, new]) == set()


def test_a_batch_that_fails_part_way_leaves_nothing(tmp_path: Path) -> None:
    """The writer's commit spans the concerns in one transaction: a failure in its last steps
    rolls back the index rows and follows its first steps wrote, and the cursor stays."""
    uri = "at://did:plc:a/app.bsky.feed.post/1"

    def written() -> Iterator[str]:
        yield "post"
        raise OSError("the disk went away")

    with StateStore(tmp_path / "s.sqlite") as state:
        follows = {"at://did:plc:a/app.bsky.graph.follow/1": ("did:plc:a", "did:plc:b")}
        with pytest.raises(OSError, match="the disk went away"):
            state.commit(7, [(uri, HandlerKey.POST)], follows, resync=["did:plc:a"], written=written())
        assert state.cursors.get() is None and state.index.count() == 0
        assert state.population.tracked_follows() == {} and state.backfills.recorded() == {}
        state.commit(7, [(uri, HandlerKey.POST)])  # the connection is usable again
        assert state.cursors.get() == 7 and state.index.count() == 1


def test_statuses_are_stored_as_the_strings_earlier_stores_hold(tmp_path: Path) -> None:
    """The columns' enums are stored as their plain values, which read back as the enums: a
    store written before them opens unchanged."""
    path = tmp_path / "s.sqlite"
    with StateStore(path) as state:
        state.backfills.record("did:plc:a", rev="3mptbypluud2a", records=1)
        state.backfills.record("did:plc:b", reason="no repository")
        takendown = PurgeReason.for_account("takendown")
        state.commit(1, account_purges={"did:plc:c": (1, takendown)}, resync=["did:plc:d"])
        state.purges.begin("p1", ["did:plc:e"], PurgeReason.WITHDRAWAL, 10.0)
    with closing(sqlite3.connect(path)) as db:
        assert sorted(db.execute("SELECT did, status FROM backfills")) == [
            ("did:plc:a", "done"),
            ("did:plc:b", "failed"),
            ("did:plc:d", "pending"),
        ]
        assert db.execute("SELECT reason FROM pending_purges").fetchall() == [("takendown account",)]
        assert db.execute("SELECT reason FROM purges").fetchall() == [("withdrawal",)]
        assert db.execute("SELECT reason FROM purged_dids").fetchall() == [("withdrawal",)]
    with StateStore(path) as state:
        assert state.backfills.recorded()["did:plc:d"].status is BackfillStatus.PENDING
        assert state.purges.pending() == {"did:plc:c": (1, PurgeReason.TAKENDOWN_ACCOUNT)}
        assert [record.reason for record in state.purges.records()] == [PurgeReason.WITHDRAWAL]
