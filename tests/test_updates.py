"""Updates: every version of a record that reaches the cache is its own row, exactly once,
whatever the timing of exports."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as pads

from syncstream.export.__main__ import main as export_main
from syncstream.state import StateStore
from syncstream.write.__main__ import main as write_main
from syncstream.write.encode import OpSpec
from tests.helpers import commit, post, record_cid, tree, write_replay, write_users

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
    state = StateStore(tmp_path / "state.sqlite")
    state.set_cursor(0)  # the relay replays everything
    state.close()
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
