"""Stopping and restarting as a service manager does: SIGTERM to the whole process group (the
command and its helper at once), SIGHUP, and reruns of finished work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from syncstream.failpoints import ENV
from syncstream.firehose.decode import decode_frame
from syncstream.servers.relay import LoopbackRelay, ReplayRelay
from syncstream.store import StateStore, relay_cursor
from syncstream.write.__main__ import main as write_main
from tests.helpers import ROOT, corpus_frames, tree, write_replay

SAMPLE = ROOT / "syncstream" / "data"
USERS = ["--study-users", str(SAMPLE / "sample_study_users.txt"),
         "--in-network-users", str(SAMPLE / "sample_in_network_users.txt")]  # fmt: skip


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite"), "--no-sync"]


def in_own_group(command: list[str], failpoints: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a session of its own, with failpoints that signal its whole group."""
    return subprocess.run(
        command, env={**os.environ, ENV: failpoints}, start_new_session=True,
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_sigterm_to_the_writers_group_is_a_clean_stop(tmp_path: Path) -> None:
    """SIGTERM to the writer and its helper at once (systemd's stop), sent while the helper
    writes a batch, ends the writer with exit 0 and its summary, and its stored cursor covers
    exactly the files in the cache: those of a replay up to that cursor."""
    with LoopbackRelay(ReplayRelay(corpus_frames())) as relay:
        command = [sys.executable, "-m", "syncstream.write", "-q", *store(tmp_path), *USERS, "--relay", relay.url,
                   "--flush-frames", "100000", "--flush-seconds", "0.2"]  # fmt: skip
        stopped = in_own_group(command, "write-helper/write.file_written:5:term")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("frames: ") and "error" not in stopped.stderr
    cursor = int(stopped.stdout.split("\ncursor: ")[1].split()[0])
    with StateStore(tmp_path / "s.sqlite") as state:
        assert cursor == state.cursors.get(relay_cursor(relay.url))
    upto = [frame for frame in corpus_frames() if (decode_frame(frame).seq or 0) <= cursor]
    replay = write_replay(tmp_path / "upto.bin", upto)
    assert write_main([*store(tmp_path / "upto"), "-q", *USERS, "--replay", str(replay)]) == 0
    assert tree(tmp_path / "cache") == tree(tmp_path / "upto" / "cache") != set()


def test_sigterm_to_the_groups_of_export_every_finishes_the_run(tmp_path: Path) -> None:
    """SIGTERM to `export --every` and its Parquet helper at once, while the helper writes a
    part, lets the run under way finish (every row exported, the cache emptied), then stops
    the loop with exit 0."""
    assert write_main([*store(tmp_path), "-q"]) == 0  # the bundled sample: 15 cache files
    out = tmp_path / "out"
    command = [sys.executable, "-m", "syncstream.export", *store(tmp_path)[:-1], "-q", "--out", str(out),
               "--every", "1h"]  # fmt: skip
    stopped = in_own_group(command, "export-helper/export.parquet_temp:1:term")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("exported 15 rows from 15 cache files")
    parts = out.rglob("partition_date=*/*.parquet")  # the rows (not the study's record)
    assert sum(pq.ParquetFile(part).metadata.num_rows for part in parts) == 15
    assert tree(tmp_path / "cache") == set()


def test_sighup_does_not_stop_export_every(tmp_path: Path) -> None:
    """SIGHUP (a terminal's hangup, to the whole group) in the middle of an export is logged
    and otherwise ignored: the run finishes and the loop goes on until SIGTERM."""
    assert write_main([*store(tmp_path), "-q"]) == 0
    command = [sys.executable, "-m", "syncstream.export", *store(tmp_path)[:-1], "--out", str(tmp_path / "out"),
               "--every", "0.2s"]  # fmt: skip
    with subprocess.Popen(
        command, env={**os.environ, ENV: "export-helper/export.parquet_temp:1:hup"}, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as loop:  # fmt: skip
        assert loop.stdout is not None
        first = loop.stdout.readline()
        line = "?"
        while line and not line.startswith("exported"):  # a second run began and ended
            line = loop.stdout.readline()
        loop.send_signal(signal.SIGTERM)
        _, err = loop.communicate(timeout=60)
    assert loop.returncode == 0, err
    assert first.startswith("exported 15 rows") and line.startswith("exported 0 rows")
    assert "SIGHUP" in err
