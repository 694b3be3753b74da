"""The writer is whole when made: its collaborators are constructor arguments, its timers read
the clock it is given, and the contexts it is given are closed by ``with``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from syncstream.cache import WriterLock
from syncstream.errors import CacheLockedError
from syncstream.firehose.encode import OpSpec
from syncstream.write.context import setup_cache_write_system
from syncstream.write.writer import CacheWriter
from tests.helpers import ManualClock, commit, post, write_users

STUDY = "did:plc:53iucmf5ldftgqyf2ac7hmhd"


def frame(seq: int) -> bytes:
    return commit(seq, STUDY, OpSpec("create", f"app.bsky.feed.post/3p{seq}", post(f"{seq}")))


def test_a_flush_falls_due_when_the_writers_clock_passes_flush_seconds(tmp_path: Path) -> None:
    """flush_seconds is measured on the writer's clock: a frame is made durable by the first
    frame after it that finds the interval passed, not before."""
    clock = ManualClock(start=1000.0)
    study = write_users(tmp_path / "study.txt", [STUDY])
    with setup_cache_write_system(tmp_path / "cache", tmp_path / "s.sqlite", study_users=study) as context:
        writer = CacheWriter(context, durable=False, flush_seconds=2.0, clock=clock)
        writer.process_frame(frame(1))
        clock.now += 1.9
        assert not writer.flush_due()
        writer.process_frame(frame(2))
        assert context.state.cursors.get() is None
        clock.now += 0.1
        assert writer.flush_due()
        writer.process_frame(frame(3))
        assert context.state.cursors.get() == 3 and not writer.flush_due()


def test_flush_hooks_are_called_before_and_after_each_durable_commit(tmp_path: Path) -> None:
    """on_flush runs before the cursor is committed, each flush observer after it, with the
    flush's seconds; a flush with nothing to commit calls neither."""
    calls: list[tuple[str, int | None]] = []
    study = write_users(tmp_path / "study.txt", [STUDY])
    with setup_cache_write_system(tmp_path / "cache", tmp_path / "s.sqlite", study_users=study) as context:

        def before() -> None:
            calls.append(("before", context.state.cursors.get()))

        def after(seconds: float) -> None:
            assert seconds >= 0
            calls.append(("after", context.state.cursors.get()))

        writer = CacheWriter(context, durable=False, on_flush=before, flush_observers=[after])
        writer.process_frame(frame(1))
        writer.flush()
        writer.flush()
    assert calls == [("before", None), ("after", 1)]


@pytest.mark.parametrize(("resume", "written"), [("cursor", [3]), (1, [2, 3]), ("live", [1, 2, 3])])
def test_resume_says_where_the_stream_is_taken_up(
    tmp_path: Path, resume: int | Literal["cursor", "live"], written: list[int]
) -> None:
    """After the stored cursor (2), after a given seq, or from wherever the relay is."""
    study = write_users(tmp_path / "study.txt", [STUDY])
    with setup_cache_write_system(tmp_path / "cache", tmp_path / "s.sqlite", study_users=study) as context:
        CacheWriter(context, durable=False).process_frames([frame(2)])
    with setup_cache_write_system(tmp_path / "cache", tmp_path / "s.sqlite", study_users=study) as context:
        writer = CacheWriter(context, durable=False, resume=resume)
        summary = writer.process_frames([frame(seq) for seq in (1, 2, 3)])
    assert summary.files == {"post": len(written)}
    assert summary.skipped_below_cursor == 3 - len(written)


def test_the_context_releases_the_cache_when_its_block_ends(tmp_path: Path) -> None:
    """Inside the block the writer lock is held; after it (an error included) it is free and
    the store closed."""
    with (
        pytest.raises(RuntimeError),
        setup_cache_write_system(tmp_path / "cache", tmp_path / "s.sqlite") as context,
    ):
        with pytest.raises(CacheLockedError):
            WriterLock(context.cache_root).acquire()
        raise RuntimeError("the block fails")
    WriterLock(context.cache_root).acquire().release()
    with pytest.raises(Exception, match="closed"):
        context.state.cursors.get()
