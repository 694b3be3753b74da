"""The cached-URI index holds only what a delete cannot be routed without, and for a while."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.state_growth import measure
from syncstream.firehose.encode import OpSpec
from syncstream.registry.types import HandlerKey as K
from syncstream.store import StateStore
from syncstream.write.__main__ import main as write_main
from tests.helpers import commit, like, post, tree, write_replay, write_users

STUDY, FRIEND, STRANGER = "did:plc:study", "did:plc:friend", "did:plc:stranger"


def test_growth_per_record() -> None:
    """In-network posts add no index rows and no state bytes; a like on a study user's post
    adds one row, about 120 bytes (the figures in the README come from the same measure)."""
    found = measure(500)
    assert found["in-network post"] == (0.0, 0.0)
    size, rows = found["like on a study post"]
    assert rows == 1.0
    assert 60 < size < 250


def test_own_and_in_network_deletes_route_without_the_index(tmp_path: Path) -> None:
    """A study user's and an in-network user's deletes are written though nothing was indexed;
    another account's delete of a like on a study post is routed through its index row."""
    frames = [
        commit(1, STUDY, OpSpec("create", "app.bsky.feed.post/3p", post())),
        commit(2, FRIEND, OpSpec("create", "app.bsky.feed.post/3n", post())),
        commit(
            3,
            STRANGER,
            OpSpec("create", "app.bsky.feed.like/3l", like(f"at://{STUDY}/app.bsky.feed.post/3p")),
        ),
    ]
    deletes = [
        commit(4, STUDY, OpSpec("delete", "app.bsky.feed.post/3p")),
        commit(5, FRIEND, OpSpec("delete", "app.bsky.feed.post/3n")),
        commit(6, STRANGER, OpSpec("delete", "app.bsky.feed.like/3l")),
    ]
    args = ["--cache-dir", str(tmp_path / "cache"), "--state", str(tmp_path / "s.sqlite"), "-q", "--no-sync"]
    args += ["--study-users", str(write_users(tmp_path / "study.txt", [STUDY]))]
    args += ["--in-network-users", str(write_users(tmp_path / "net.txt", [FRIEND]))]
    assert write_main([*args, "--replay", str(write_replay(tmp_path / "a.bin", frames))]) == 0
    with StateStore(tmp_path / "s.sqlite") as state:
        assert state.index.count() == 1
    assert write_main([*args, "--replay", str(write_replay(tmp_path / "b.bin", deletes))]) == 0
    deleted = {path.split("/")[2] for path in tree(tmp_path / "cache") if "/delete/" in path}
    assert deleted == {"post", "like_on_user_post"}
    assert {p for p in tree(tmp_path / "cache") if p.startswith("in_network_user_activity/delete/")}


def test_the_index_is_pruned_after_its_retention(tmp_path: Path) -> None:
    """Rows older than the retention are forgotten; younger ones stay."""
    with StateStore(tmp_path / "s.sqlite") as state:
        state.commit(1, [("at://did:plc:x/app.bsky.feed.like/1", K.LIKE_ON_USER_POST)])
        cutoff = time.time() + 1
        state.commit(2, [("at://did:plc:x/app.bsky.feed.like/2", K.LIKE_ON_USER_POST)])
        assert state.index.prune(cutoff - 3600) == 0
        assert state.index.prune(cutoff) == 2 and state.index.count() == 0
