"""Cursor after durability, and crash recovery: kill a replaying writer at named failpoints,
restart, compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncstream.firehose.encode import OpSpec
from syncstream.store import StateStore
from tests.helpers import commit, like, post, tree, write_replay, write_users

STUDY = "did:plc:studystudystudystudystu"
OTHER = "did:plc:otherotherotherotherothe"
FIRST_SEQ = 2**35  # sequence numbers are above 2**34 today


def frames(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        seq = FIRST_SEQ + i
        if i % 3 == 2:  # a like of a study user's post by someone else
            out.append(
                commit(
                    seq,
                    OTHER,
                    OpSpec(
                        "create",
                        f"app.bsky.feed.like/l{i}",
                        like(f"at://{STUDY}/app.bsky.feed.post/p{i - 1}"),
                    ),
                )
            )
        else:
            out.append(commit(seq, STUDY, OpSpec("create", f"app.bsky.feed.post/p{i}", post(f"post {i}"))))
    return out


def files_of(index: int) -> set[str]:
    if index % 3 == 2:
        return {
            f"study_user_activity/create/like_on_user_post/p{index - 1}/author_did={OTHER}_like_uri_suffix=l{index}.json"
        }
    return {f"study_user_activity/create/post/author_did={STUDY}_post_uri_suffix=p{index}.json"}


def command(root: Path, replay: Path, study: Path) -> list[str]:
    return [
        sys.executable, "-m", "syncstream.write", "-q", "--cache-dir", str(root / "cache"),
        "--state", str(root / "state.sqlite"), "--study-users", str(study), "--replay", str(replay),
        "--flush-frames", "40",
    ]  # fmt: skip


def stored_cursor(root: Path) -> int | None:
    if not (root / "state.sqlite").exists():  # killed before it opened its state
        return None
    with StateStore(root / "state.sqlite") as state:
        return state.cursors.get()


@pytest.mark.parametrize(
    "failpoint",
    [
        "writer/write.batch_sent:3:kill",  # batches handed to the helper, not yet durable
        "write-helper/write.file_written:170:kill",  # the helper dies alone, mid-batch
        "writer/write.files_durable:2:kill",  # files durable, their cursor not yet stored
        "writer/write.cursor_stored:3:kill",
    ],
)
def test_killed_writer_resumes_to_the_uninterrupted_tree(tmp_path: Path, failpoint: str) -> None:
    """Killed at a named step, the writer's stored cursor covers only files on disk, whole;
    a restart ends on the tree and the contents of an uninterrupted run."""
    count = 600
    replay = write_replay(tmp_path / "replay.bin", frames(count))
    study = write_users(tmp_path / "study.txt", [STUDY])
    expected = set().union(*(files_of(i) for i in range(count)))

    clean = tmp_path / "clean"
    subprocess.run(command(clean, replay, study), check=True, capture_output=True)
    assert tree(clean / "cache") == expected

    crashed = tmp_path / "crashed"
    killed = subprocess.run(
        command(crashed, replay, study),
        capture_output=True,
        env={**os.environ, "SYNCSTREAM_FAILPOINTS": failpoint},
        check=False,
    )
    assert killed.returncode in (-9, 1), killed.stderr
    cursor = stored_cursor(crashed)
    if cursor is not None:
        covered = set().union(*(files_of(i) for i in range(cursor - FIRST_SEQ + 1)))
        assert covered <= tree(crashed / "cache"), "the cursor ran ahead of the files it covers"
        for name in covered:
            json.loads((crashed / "cache" / name).read_bytes())  # whole files only
    subprocess.run(command(crashed, replay, study), check=True, capture_output=True)
    assert stored_cursor(crashed) == FIRST_SEQ + count - 1
    assert tree(crashed / "cache") == expected

    def content(root: Path, name: str) -> dict[str, object]:
        record: dict[str, object] = json.loads((root / "cache" / name).read_bytes())
        del record["synctimestamp"]
        return record

    assert all(content(crashed, name) == content(clean, name) for name in expected)
