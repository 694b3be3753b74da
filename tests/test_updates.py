"""Updates: every version of a record that reaches the cache is its own row, exactly once,
whatever the timing of exports."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as pads
import pytest

from syncstream.export.__main__ import main as export_main
from syncstream.firehose.decode import Commit, RepoOp
from syncstream.firehose.encode import OpSpec
from syncstream.registry.records import BACKFILL
from syncstream.store import StateStore
from syncstream.write.__main__ import main as write_main
from syncstream.write.context import setup_cache_write_system
from syncstream.write.writer import CacheWriter
from tests.helpers import TIME, commit, post, record_cid, tree, write_replay, write_users

STUDY = "did:plc:study"
TEXTS = ["first", "second", "third", "fourth"]


def versions() -> list[bytes]:
    """A study user's post created, then updated three times."""
    return [
        commit(10 + i, STUDY, OpSpec("create" if i == 0 else "update", "app.bsky.feed.post/3p", post(text)))
        for i, text in enumerate(TEXTS)
    ]


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "state.sqlite"), "-q"]


def write(root: Path, frames: list[bytes], name: str) -> None:
    replay = write_replay(root / f"{name}.bin", frames)
    study = write_users(root / "study.txt", [STUDY])
    assert write_main([*store(root), "--no-sync", "--replay", str(replay), "--study-users", str(study)]) == 0


def export(root: Path) -> None:
    assert export_main([*store(root), "--out", str(root / "out")]) == 0


def rows(root: Path) -> list[tuple[str, str, str]]:
    table = pads.dataset(root / "out" / "study_user_activity" / "post", partitioning="hive").to_table()
    return sorted((r["operation"], r["cid"], r["text"]) for r in table.to_pylist())


EXPECTED = sorted(
    ("create" if i == 0 else "update", record_cid(post(text)), text) for i, text in enumerate(TEXTS)
)


def test_versions_within_one_export(tmp_path: Path) -> None:
    """A create and three updates written before one export: four files, four rows."""
    write(tmp_path, versions(), "all")
    files = tree(tmp_path / "cache")
    assert len(files) == 4
    assert "study_user_activity/create/post/author_did=did:plc:study_post_uri_suffix=3p.json" in files
    assert (
        f"study_user_activity/create/post/author_did=did:plc:study_post_uri_suffix=3p_cid={record_cid(post('second'))}.json"
        in files
    )
    export(tmp_path)
    assert rows(tmp_path) == EXPECTED


def test_versions_across_exports_and_replays(tmp_path: Path) -> None:
    """Exports between the versions, and a writer replaying them all afterwards: four rows, once each."""
    frames = versions()
    for i, frame in enumerate(frames):
        write(tmp_path, [frame], f"v{i}")
        if i != 2:
            export(tmp_path)
    with StateStore(tmp_path / "state.sqlite") as state:
        state.cursors.set(0)  # the relay replays everything
    write(tmp_path, frames, "replay")
    export(tmp_path)
    assert rows(tmp_path) == EXPECTED
    assert tree(tmp_path / "cache") == set()


def test_an_update_with_the_same_content_is_one_row(tmp_path: Path) -> None:
    """Two updates to the same content are one version: one row."""
    frames = [*versions()[:2], commit(20, STUDY, OpSpec("update", "app.bsky.feed.post/3p", post("second")))]
    write(tmp_path, frames, "same")
    export(tmp_path)
    assert [text for _, _, text in rows(tmp_path)] == ["first", "second"]


def backfill(root: Path, text: str) -> None:
    """The post as a backfill reads it from the repository: a create at the repository's rev."""
    with setup_cache_write_system(root / "cache", root / "state.sqlite") as context:
        writer = CacheWriter(context, durable=False)
        record = post(text)
        op = RepoOp("create", "app.bsky.feed.post", "3p", record_cid(record), record)
        writer.apply_commit(Commit(None, STUDY, "3mptbypluud2z", TIME, (op,), source=BACKFILL))
        writer.flush()


@pytest.mark.parametrize("exports_between", [True, False])
def test_a_backfill_of_a_version_seen_live_adds_no_row(tmp_path: Path, exports_between: bool) -> None:
    """Created live (c0), updated live (c1), then backfilled at c1: two rows, c0 and c1,
    whether exports ran between the three or once after all of them (the backfill's file
    must not replace the live create's)."""
    frames = versions()[:2]
    write(tmp_path, frames[:1], "create")
    if exports_between:
        export(tmp_path)
    write(tmp_path, frames[1:], "update")
    if exports_between:
        export(tmp_path)
    backfill(tmp_path, "second")
    export(tmp_path)
    assert rows(tmp_path) == [
        ("create", record_cid(post("first")), "first"),
        ("update", record_cid(post("second")), "second"),
    ]
    assert tree(tmp_path / "cache") == set()


def test_a_create_and_an_update_of_one_cid_are_one_row(tmp_path: Path) -> None:
    """Same-cid versions are one, whatever operation brought them: in one export, or across two."""
    same = [versions()[0], commit(11, STUDY, OpSpec("update", "app.bsky.feed.post/3p", post("first")))]
    write(tmp_path, same, "one")
    export(tmp_path)
    assert [text for _, _, text in rows(tmp_path)] == ["first"]
    write(tmp_path, [commit(12, STUDY, OpSpec("update", "app.bsky.feed.post/3p", post("first")))], "two")
    export(tmp_path)
    assert [text for _, _, text in rows(tmp_path)] == ["first"]
