"""The writer's file writes in a helper process: in order, drained before the cursor moves,
failures reported, the writer lock held, and the helper gone with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from syncstream.cache import WriterLock
from syncstream.errors import CacheLockedError
from syncstream.firehose.encode import OpSpec
from syncstream.store import StateStore
from syncstream.write.__main__ import main
from syncstream.write.writes import HelperWrites, InlineWrites
from tests.helpers import CORPUS, ROOT, commit, post, store_args, tree, wait_for, write_replay, write_users

STUDY = "did:plc:studystudystudystudystu"


def test_helper_writes_land_in_order_by_the_drain(tmp_path: Path) -> None:
    """Every write is on disk once drain returns, the later of two writes to one path winning."""
    files = HelperWrites(str(tmp_path))
    try:
        for i in range(1000):  # several batches
            files.write(str(tmp_path / "d" / f"{i % 700}.json"), f"{i}".encode())
        files.drain()
        assert sorted(os.listdir(tmp_path / "d")) == sorted(f"{i}.json" for i in range(700))
        assert (tmp_path / "d" / "5.json").read_bytes() == b"705"
        assert (tmp_path / "d" / "300.json").read_bytes() == b"300"
        assert (tmp_path / "d" / "1.json").read_bytes() == b"701"
    finally:
        files.close()


@pytest.mark.parametrize("files_class", [HelperWrites, InlineWrites])
def test_a_path_that_cannot_be_written_is_passed_over(tmp_path: Path, files_class: type) -> None:
    """A path the filesystem refuses (a directory holds its name, its directory is a file) is
    reported by the drain with its reason, and the writes around it land."""
    (tmp_path / "blocked").write_text("a file where a directory should be")
    (tmp_path / "ok" / "taken.json").mkdir(parents=True)
    files = files_class(str(tmp_path))
    try:
        files.write(str(tmp_path / "ok" / "first.json"), b"1")
        files.write(str(tmp_path / "blocked" / "x.json"), b"2")
        files.write(str(tmp_path / "ok" / "taken.json"), b"3")
        files.write(str(tmp_path / "ok" / "after.json"), b"4")
        assert files.drain() == [
            (str(tmp_path / "blocked" / "x.json"), "unwritable:ENOTDIR"),
            (str(tmp_path / "ok" / "taken.json"), "unwritable:EISDIR"),
        ]
        assert files.drain() == []
        assert (tmp_path / "ok" / "first.json").read_bytes() == b"1"
        assert (tmp_path / "ok" / "after.json").read_bytes() == b"4"
    finally:
        files.close()


@pytest.mark.parametrize("files_class", [HelperWrites, InlineWrites])
def test_writes_as_a_context_manager_close_or_abort(tmp_path: Path, files_class: type) -> None:
    """A block that ends drains and stops the writes; one that ends with an error stops them
    at once (the helper is killed: what no drain confirmed may be lost)."""
    with files_class(str(tmp_path)) as files:
        files.write(str(tmp_path / "a.json"), b"1")
    assert (tmp_path / "a.json").read_bytes() == b"1"
    with pytest.raises(RuntimeError), files_class(str(tmp_path)) as files:
        files.write(str(tmp_path / "b.json"), b"2")
        raise RuntimeError("the writer failed")
    if isinstance(files, HelperWrites):
        assert files.helper.returncode == -signal.SIGKILL


def test_a_helper_that_does_not_stop_is_killed_after_the_timeout(tmp_path: Path) -> None:
    """close waits for the helper to finish what it was sent, at most its timeout."""
    files = HelperWrites(str(tmp_path))
    for i in range(3 * HelperWrites.BATCH):  # three batches, each sent once full
        files.write(str(tmp_path / f"{i}.json"), b"x" * 1000)
    assert files.helper.close(timeout=0) == -signal.SIGKILL


def test_the_helper_holds_the_writer_lock_until_it_exits(tmp_path: Path) -> None:
    """With the writer's lock passed to it, the cache stays locked until the helper is gone."""
    lock = WriterLock(str(tmp_path)).acquire()
    files = HelperWrites(str(tmp_path), lock_fd=lock.fileno())
    lock.release()
    with pytest.raises(CacheLockedError):
        WriterLock(str(tmp_path)).acquire()
    files.close()
    WriterLock(str(tmp_path)).acquire().release()


CHILD = """
import sys, time
from syncstream.write.writes import HelperWrites
files = HelperWrites("/tmp")
print("started", flush=True)
time.sleep(60)
"""


def test_the_helper_dies_with_its_parent(tmp_path: Path) -> None:
    """SIGKILL the process that started a helper: the helper is gone at once, not orphaned."""
    parent = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, cwd=ROOT, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == "started\n"
        [helper_pid] = _children(parent.pid)
        assert _alive(helper_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    wait_for(lambda: not _alive(helper_pid), "the helper gone", timeout=10)


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited (it waits for init to reap it)


def test_helper_and_inline_writes_give_the_same_tree(tmp_path: Path) -> None:
    """The write command gives one tree and one cursor whichever process writes the files."""
    study = ROOT / "syncstream" / "data" / "sample_study_users.txt"
    replay = CORPUS / "frames.bin.zst"
    for mode in ("helper", "inline"):
        extra = ["--inline-writes"] if mode == "inline" else []
        args = [*store_args(tmp_path / mode), "--replay", str(replay), "--study-users", str(study)]
        assert main([*args, *extra]) == 0
    assert tree(tmp_path / "helper" / "cache") == tree(tmp_path / "inline" / "cache")
    assert len(tree(tmp_path / "helper" / "cache")) > 10
    cursors = []
    for mode in ("helper", "inline"):
        with StateStore(tmp_path / mode / "s.sqlite") as state:
            cursors.append(state.cursors.get())
    assert cursors[0] == cursors[1] == 31527015471


def test_a_failing_file_writer_exits_1_and_keeps_the_cursor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When writing a cache file fails (here: the write helper raises, as a full disk would
    make it stop), the command exits 1, says so, and the cursor does not move."""
    replay = write_replay(
        tmp_path / "r.bin",
        [commit(100 + i, STUDY, OpSpec("create", f"app.bsky.feed.post/p{i}", post())) for i in range(3)],
    )
    study = write_users(tmp_path / "study.txt", [STUDY])
    args = [*store_args(tmp_path), "--replay", str(replay), "--study-users", str(study)]
    monkeypatch.setenv("SYNCSTREAM_FAILPOINTS", "write-helper/write.file_written:2:raise")
    assert main(args) == 1
    assert "the helper process syncstream.write.writes stopped" in capsys.readouterr().err
    with StateStore(tmp_path / "s.sqlite") as state:
        assert state.cursors.get() is None
