"""Exactly once without a window: a record of the population exported once stays one row
however late it comes again (a repository backfilled again with ``--force``, a stream resent
from an old cursor), after the window of exported keys has long passed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from deltalake import DeltaTable

from syncstream.firehose.encode import OpSpec
from syncstream.servers.pds import LoopbackPds
from syncstream.store import StateStore
from tests.helpers import commit, post, write_replay, write_users
from tests.tables import dataset_names
from tests.test_backfill import CAR, DID, KEPT, KEY, backfill, store

STUDY = "did:plc:study000000000000000000000"


def export(root: Path, *extra: str) -> None:
    """The export as a process; ``--dedup-window-hours 0`` forgets every key it may at once."""
    result = subprocess.run(
        [sys.executable, "-m", "syncstream.export", *store(root), "--out", str(root / "out"), *extra],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def versions(root: Path) -> list[tuple[str, str, str]]:
    """(dataset, uri, cid) of every row of every table under the output, sorted, duplicates
    kept."""
    found = []
    for name in dataset_names(root / "out"):  # the record tables (coverage, membership) have no uri
        table = DeltaTable(str(root / "out" / name))
        data = table.to_pyarrow_dataset().to_table(columns=["uri", "cid"], use_threads=False)
        found += [
            (name, uri, cid)
            for uri, cid in zip(data.column("uri").to_pylist(), data.column("cid").to_pylist(), strict=True)
        ]
        del table
    return sorted(found)


def test_a_repository_backfilled_again_after_the_window_adds_no_row(tmp_path: Path) -> None:
    """Backfilled, exported, the window passed (every forgettable key forgotten), backfilled
    again with --force and exported: every record of the repository is still one row."""
    with LoopbackPds({DID: CAR}, key=KEY) as pds:
        assert backfill(tmp_path, pds) == 0
        export(tmp_path)
        first = versions(tmp_path)
        assert len(first) == len(set(first)) >= 10
        export(tmp_path, "--dedup-window-hours", "0")
        assert backfill(tmp_path, pds, "--force") == 0
        assert pds.requests == [DID, DID]
    export(tmp_path)
    assert versions(tmp_path) == first
    assert {name for name in KEPT.values() if (tmp_path / "out" / name).is_dir()}


def test_a_stream_resent_from_an_old_cursor_after_the_window_adds_no_row(tmp_path: Path) -> None:
    """A study user's post and its two updates, exported; the window passes; the stream is
    written again from cursor 0 (an operator's rerun): still three rows, one per version."""
    uri = "app.bsky.feed.post/3lzz"
    frames = [
        commit(1, STUDY, OpSpec("create", uri, post("one"))),
        commit(2, STUDY, OpSpec("update", uri, post("two"))),
        commit(3, STUDY, OpSpec("update", uri, post("three"))),
    ]
    arguments = [*store(tmp_path), "--no-sync", "--replay", str(write_replay(tmp_path / "r.bin", frames))]
    arguments += ["--study-users", str(write_users(tmp_path / "study.txt", [STUDY]))]
    write = [sys.executable, "-m", "syncstream.write", *arguments]
    assert subprocess.run(write, capture_output=True, check=False).returncode == 0
    export(tmp_path)
    first = versions(tmp_path)
    assert len(first) == len(set(first)) == 3
    export(tmp_path, "--dedup-window-hours", "0")
    assert subprocess.run([*write, "--cursor", "0"], capture_output=True, check=False).returncode == 0
    export(tmp_path)
    assert versions(tmp_path) == first
    with StateStore(tmp_path / "s.sqlite", create=False) as state:
        assert state.exports.prune(float("inf")) == 0  # the population's keys are kept
