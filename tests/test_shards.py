"""Shards side by side: two stores with different populations export into the same tables at
the same time, on a local disk and on S3 (moto on loopback); every row lands once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
from deltalake import DeltaTable

from syncstream.firehose.encode import OpSpec
from syncstream.lake.delta import location
from syncstream.store import StateStore
from syncstream.write.__main__ import main as write_main
from tests.helpers import commit, like, post, write_replay, write_users

POSTS = "study_user_activity/post"


def shard(root: Path, did: str, count: int) -> None:
    """A store whose one study user posts ``count`` times and likes its own first post."""
    root.mkdir()
    first = f"at://{did}/app.bsky.feed.post/3p0"
    frames = [
        commit(10 + i, did, OpSpec("create", f"app.bsky.feed.post/3p{i}", post(f"{i}"))) for i in range(count)
    ]
    frames.append(commit(10 + count, did, OpSpec("create", "app.bsky.feed.like/3l0", like(first))))
    args = ["--cache-dir", str(root / "cache"), "--state", str(root / "state.sqlite"), "-q", "--no-sync"]
    args += ["--study-users", str(write_users(root / "study.txt", [did]))]
    args += ["--replay", str(write_replay(root / "replay.bin", frames))]
    assert write_main(args) == 0


def export_together(roots: list[Path], out: str) -> None:
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "syncstream.export",
                "--cache-dir",
                str(root / "cache"),
                "--state",
                str(root / "state.sqlite"),
                "--out",
                out,
                "--batch-files",
                "3",
                "-q",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=os.environ.copy(),
        )
        for root in roots
    ]
    for process in processes:
        _, error = process.communicate(timeout=300)
        assert process.returncode == 0, error.decode()


def check(roots: list[Path], out: str, counts: list[int]) -> None:
    where = location(out, POSTS)
    table = DeltaTable(where.uri, storage_options=where.storage_options)
    uris = [
        r["uri"] for r in table.to_pyarrow_dataset().to_table(columns=["uri"], use_threads=False).to_pylist()
    ]
    assert len(uris) == len(set(uris)) == sum(counts)
    for root in roots:
        with StateStore(root / "state.sqlite") as state:
            assert table.transaction_version(state.exports.store_id()) == 1
    del table


def test_two_stores_export_into_one_local_lake_at_once(tmp_path: Path) -> None:
    """Both exports succeed; each table holds both stores' rows once."""
    roots = [tmp_path / "a", tmp_path / "b"]
    shard(roots[0], "did:plc:shardaaaaaaaaaaaaaaaaaaa", 40)
    shard(roots[1], "did:plc:shardbbbbbbbbbbbbbbbbbbb", 25)
    export_together(roots, str(tmp_path / "lake"))
    check(roots, str(tmp_path / "lake"), [40, 25])
    export_together(roots, str(tmp_path / "lake"))  # nothing new: nothing doubled
    check(roots, str(tmp_path / "lake"), [40, 25])


def test_two_stores_export_into_one_s3_lake_at_once(tmp_path: Path, s3_endpoint: str) -> None:
    """The same on S3, where commits race through conditional puts (no lock service)."""
    filesystem, _ = pafs.FileSystem.from_uri(f"s3://lake?{s3_endpoint}&allow_bucket_creation=true")
    filesystem.create_dir("lake")
    roots = [tmp_path / "a", tmp_path / "b"]
    shard(roots[0], "did:plc:shardaaaaaaaaaaaaaaaaaaa", 12)
    shard(roots[1], "did:plc:shardbbbbbbbbbbbbbbbbbbb", 9)
    out = f"s3://lake/study?{s3_endpoint}"
    export_together(roots, out)
    check(roots, out, [12, 9])
