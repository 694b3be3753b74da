"""Cache file I/O: atomic writes, listing, removal, the writer lock and the reset."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from syncstream import cache
from syncstream.errors import CacheLockedError
from syncstream.registry import reading


def test_atomic_write_creates_directories_and_leaves_no_temporary(tmp_path: Path) -> None:
    """A write into a missing directory creates it; only the final name remains."""
    target = tmp_path / "a" / "b" / "x.json"
    cache.write_atomic(str(target), b'{"k":1}')
    assert target.read_bytes() == b'{"k":1}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]


def test_temporary_is_dot_prefixed_in_the_same_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary lives beside the target, dot-prefixed, and is renamed into place."""
    renames: list[tuple[str, str]] = []
    real_rename = os.rename

    def spy(src: str, dst: str) -> None:
        renames.append((src, dst))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", spy)
    target = str(tmp_path / "x.json")
    cache.write_atomic(target, b"{}")
    assert renames == [(str(tmp_path / ".x.json.tmp"), target)]


def test_a_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    """While one thread rewrites a large file, a reader only ever sees one whole version."""
    target = str(tmp_path / "big.json")
    versions = [b"[" + b"1," * 400_000 + b"1]", b"[" + b"2," * 300_000 + b"2]"]
    cache.write_atomic(target, versions[0])
    stop = threading.Event()
    seen: list[bytes] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(cache.read_bytes(target))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(60):
            cache.write_atomic(target, versions[i % 2])
    finally:
        stop.set()
        reader.join()
    assert seen
    assert set(seen) <= set(versions)


def test_read_nested_finds_files_one_level_down(tmp_path: Path) -> None:
    """The nested strategy reads {dir}/{key}/*.json, the flat one only {dir}/*.json."""
    (tmp_path / "k1").mkdir()
    (tmp_path / "k1" / "a.json").write_bytes(b"{}")
    (tmp_path / "top.json").write_bytes(b"{}")
    assert list(reading.read_nested(str(tmp_path))) == [str(tmp_path / "k1" / "a.json")]
    assert list(reading.read_flat(str(tmp_path))) == [str(tmp_path / "top.json")]
    assert list(reading.read_flat(str(tmp_path / "missing"))) == []
    assert list(reading.read_nested(str(tmp_path / "missing"))) == []


def test_remove_files_removes_exactly_those_given(tmp_path: Path) -> None:
    """Only the named files go; a name already gone is skipped, not an error."""
    keep, drop = tmp_path / "keep.json", tmp_path / "drop.json"
    keep.write_bytes(b"{}")
    drop.write_bytes(b"{}")
    assert cache.remove_files([str(drop), str(tmp_path / "gone.json")]) == 1
    assert keep.exists() and not drop.exists()


def test_writer_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    """A second holder is refused while the first holds the lock, and admitted after."""
    with cache.WriterLock(str(tmp_path)), pytest.raises(CacheLockedError, match="running writer"):
        cache.WriterLock(str(tmp_path)).acquire()
    cache.WriterLock(str(tmp_path)).acquire().release()


def test_reset_refuses_while_a_writer_process_holds_the_cache(tmp_path: Path) -> None:
    """A reset beside a live writer (another process holding the lock) refuses and deletes nothing."""
    record = tmp_path / "study_user_activity" / "create" / "post" / "x.json"
    record.parent.mkdir(parents=True)
    record.write_bytes(b"{}")
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from syncstream.cache import WriterLock; "
            f"WriterLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            with pytest.raises(CacheLockedError):
                cache.reset_tree(str(tmp_path), ["study_user_activity/create/post"])
            assert record.exists()
        finally:
            holder.kill()
    record.unlink()
    (record.parent / "3a").mkdir()
    assert cache.reset_tree(str(tmp_path), ["study_user_activity/create/post"]) == []
    assert not (record.parent / "3a").exists() and record.parent.is_dir()


def test_nested_directories_may_start_with_a_dot(tmp_path: Path) -> None:
    """A nested rkey like '.0' is valid AT Protocol syntax, so its directory is read."""
    (tmp_path / ".0").mkdir()
    (tmp_path / ".0" / "a.json").write_bytes(b"{}")
    assert list(reading.read_nested(str(tmp_path))) == [str(tmp_path / ".0" / "a.json")]
