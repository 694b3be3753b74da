"""``syncstream.current_records``: the latest version of each record that is not deleted, from
an export's output on a local disk or on S3."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest
from deltalake import DeltaTable

import syncstream
from syncstream.errors import ConfigError
from syncstream.firehose.encode import OpSpec
from syncstream.lake.delta import location
from syncstream.lake.erase import deleted_content
from tests.helpers import TIME, commit, post, write_replay, write_users
from tests.tables import table_rows
from tests.test_erase import STUDY, creates, deletes, export, run, uri

OTHER_STUDY = "did:plc:secondsecondsecondsecond"
POSTS = "study_user_activity/post"
FOLLOWS = "scraped_user_social_network/follow"


def later(first_seq: int) -> list[bytes]:
    """A post created, updated twice and deleted; another created and updated; a third created
    again under the rkey of a deleted one (a new record of the same URI)."""
    rev = iter(f"3mq{n}aaaaaaaa" for n in "234567abcdefghij")

    def at(seq: int, op: OpSpec) -> bytes:
        return commit(seq, STUDY, op, rev=next(rev))

    return [
        at(first_seq, OpSpec("create", "app.bsky.feed.post/v", post("v1"))),
        at(first_seq + 1, OpSpec("update", "app.bsky.feed.post/v", post("v2"))),
        at(first_seq + 2, OpSpec("update", "app.bsky.feed.post/v", post("v3"))),
        at(first_seq + 3, OpSpec("create", "app.bsky.feed.post/w", post("w1"))),
        at(first_seq + 4, OpSpec("update", "app.bsky.feed.post/v", post("v4"))),
        at(first_seq + 5, OpSpec("delete", "app.bsky.feed.post/v")),
        at(first_seq + 6, OpSpec("update", "app.bsky.feed.post/w", post("w2"))),
        at(first_seq + 7, OpSpec("create", "app.bsky.feed.post/gone", post("again"))),
    ]


def write(root: Path, frames: list[bytes], name: str, users: list[str] | None = None) -> None:
    study = write_users(root / "study.txt", users or [STUDY])
    replay = write_replay(root / f"{name}.bin", frames)
    run("syncstream.write", root, "--replay", str(replay), "--study-users", str(study), "--no-sync")


def texts(rows: object) -> dict[str, str | None]:
    assert hasattr(rows, "to_pylist")
    return {row["uri"]: row["text"] for row in rows.to_pylist()}


def test_the_latest_version_of_each_record_not_deleted(tmp_path: Path) -> None:
    """Updates give the latest text, a deleted record is absent, a URI deleted and created
    again is its new record; over several exports (each run's rows appended)."""
    write(tmp_path, creates(100), "creates")
    export(tmp_path)
    write(tmp_path, deletes(200), "deletes")
    export(tmp_path)
    write(tmp_path, later(300), "later")
    export(tmp_path)
    current = syncstream.current_records(str(tmp_path / "out"), POSTS)
    assert texts(current) == {uri("kept"): "kept words", uri("w"): "w2", uri("gone"): "again"}
    assert set(current.column_names) >= {"uri", "operation", "rev", "record_json", "partition_date"}
    assert set(current.column("operation").to_pylist()) <= {"create", "update"}


def test_a_follow_between_study_users_is_current_once_per_status(tmp_path: Path) -> None:
    """The follow table keeps a record per (URI, follow_status): both of a follow between two
    study users, none once it is deleted."""
    follow = {"$type": "app.bsky.graph.follow", "subject": OTHER_STUDY, "createdAt": TIME}
    back = {**follow, "subject": STUDY}
    frames = [
        commit(100, STUDY, OpSpec("create", "app.bsky.graph.follow/f1", follow)),
        commit(101, OTHER_STUDY, OpSpec("create", "app.bsky.graph.follow/f2", back)),
        commit(102, OTHER_STUDY, OpSpec("delete", "app.bsky.graph.follow/f2")),
    ]
    write(tmp_path, frames, "follows", [STUDY, OTHER_STUDY])
    export(tmp_path)
    current = syncstream.current_records(str(tmp_path / "out"), FOLLOWS).to_pylist()
    f1 = uri("f1", collection="app.bsky.graph.follow")
    assert sorted((r["uri"], r["follow_status"]) for r in current) == [(f1, "followee"), (f1, "follower")]
    assert len(table_rows(tmp_path / "out", FOLLOWS)) == 6  # each of the three, once per status


def test_current_records_of_an_s3_output(tmp_path: Path, s3_endpoint: str) -> None:
    """The same from an s3:// output, the URI as export --out took it; the export erased the
    deleted posts' content there as on a local disk."""
    filesystem, _ = pafs.FileSystem.from_uri(f"s3://current?{s3_endpoint}&allow_bucket_creation=true")
    filesystem.create_dir("current")
    out = f"s3://current/study?{s3_endpoint}"
    write(tmp_path, creates(100) + deletes(200), "all")
    run("syncstream.export", tmp_path, "--out", out)
    current = syncstream.current_records(out, POSTS)
    assert texts(current) == {uri("kept"): "kept words"}
    where = location(out, POSTS)  # the deletes were honoured on S3 too
    table = DeltaTable(where.uri, storage_options=where.storage_options)
    rows = table.to_pyarrow_dataset().to_table(columns=["uri", "text"], use_threads=False).to_pylist()
    del table
    assert {row["uri"]: row["text"] for row in rows if row["text"] is not None} == {uri("kept"): "kept words"}
    assert deleted_content(where) == "erased"


def test_no_table_is_a_config_error(tmp_path: Path) -> None:
    """A dataset the output has no table of is refused by name."""
    with pytest.raises(ConfigError, match="study_user_activity/post"):
        syncstream.current_records(str(tmp_path), POSTS)
