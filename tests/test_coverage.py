"""The coverage record: each writer run's covered seqs and the gaps it knows of, stored with the
cursor that covers them (the failpoint matrix kills writers and exports around it)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from syncstream.firehose.decode import decode_frame
from syncstream.firehose.encode import OpSpec, encode_commit_frame, info_frame
from syncstream.servers.relay import LoopbackRelay, ReplayRelay
from syncstream.store import CoverageKind, CoverageReason, CoverageRow, StateStore, relay_cursor
from syncstream.write.__main__ import main as write_main
from syncstream.write.context import setup_cache_write_system
from syncstream.write.writer import CacheWriter
from tests.helpers import corpus_frames, free_port, post, store_args, write_users

STUDY = "did:plc:53iucmf5ldftgqyf2ac7hmhd"


def time_of(seq: int) -> str:
    return f"2026-07-04T14:{seq // 60 % 60:02d}:{seq % 60:02d}.000Z"


def frame(seq: int) -> bytes:
    ops = [OpSpec("create", f"app.bsky.feed.post/3p{seq}", post(f"{seq}"))]
    return encode_commit_frame(seq=seq, repo=STUDY, rev="3mptbypluud2a", time=time_of(seq), ops=ops)


def write(
    root: Path,
    frames: Iterable[bytes],
    *,
    resume: int | Literal["cursor", "live"] = "cursor",
    source: str = "cursor",
    flush: bool = True,
) -> CacheWriter:
    """One writer run over ``frames`` (flushed at the end unless ``flush`` is false: a crash)."""
    study = write_users(root / "study.txt", [STUDY])
    with setup_cache_write_system(root / "cache", root / "s.sqlite", study_users=study) as context:
        writer = CacheWriter(context, durable=False, flush_frames=4, resume=resume, cursor_source=source)
        for data in frames:
            writer.process_frame(data)
        if flush:
            writer.flush()
    return writer


def rows(root: Path) -> list[tuple[str, int | None, int | None, str, int]]:
    with StateStore(root / "s.sqlite") as state:
        return [(r.kind, r.first_seq, r.last_seq, r.reason, r.frames) for r in state.coverage.runs()]


def test_a_first_run_is_one_covered_run_with_its_frames_and_relay_times(tmp_path: Path) -> None:
    """A writer's first run over seqs 10..19 is one covered row: its seqs, frames and the
    relay's times of its first and last frame."""
    write(tmp_path, map(frame, range(10, 20)))
    with StateStore(tmp_path / "s.sqlite") as state:
        (run,) = state.coverage.runs()
    expected = CoverageRow(
        run.writer_run, 1, "cursor", CoverageKind.COVERED, 10, 19, time_of(10), time_of(19),
        CoverageReason.FIRST_START, 10,
    )  # fmt: skip
    assert expected == run


def test_a_restart_from_the_stored_cursor_is_a_new_run_with_no_gap(tmp_path: Path) -> None:
    """A replay rerun that overlaps the stored cursor resumes after it: a second covered run
    that starts at the next seq, and no gap."""
    write(tmp_path, map(frame, range(10, 20)))
    write(tmp_path, map(frame, range(15, 30)))
    assert rows(tmp_path) == [
        ("covered", 10, 19, "first start", 10),
        ("covered", 20, 29, "resumed", 10),
    ]


def test_frames_the_cursor_does_not_cover_are_not_recorded(tmp_path: Path) -> None:
    """A writer that dies before its last flush recorded only what its cursor covers; the
    rerun processes the rest again, each frame counted once over both runs."""
    crashed = write(tmp_path, map(frame, range(10, 20)), flush=False)
    assert crashed.cursor == 17  # flushed every 4 frames: 10..13, 14..17
    write(tmp_path, map(frame, range(10, 20)))
    assert rows(tmp_path) == [
        ("covered", 10, 17, "first start", 8),
        ("covered", 18, 19, "resumed", 2),
    ]


def test_a_replay_that_starts_past_the_stored_cursor_leaves_a_gap(tmp_path: Path) -> None:
    """The seqs between the stored cursor and a replay's first frame are a gap."""
    write(tmp_path, map(frame, range(10, 20)))
    write(tmp_path, map(frame, range(25, 30)))
    assert rows(tmp_path) == [
        ("covered", 10, 19, "first start", 10),
        ("gap", 20, 24, "replay start", 0),
        ("covered", 25, 29, "resumed", 5),
    ]
    with StateStore(tmp_path / "s.sqlite") as state:
        gap = state.coverage.runs()[1]
    assert (gap.first_time, gap.last_time) == (time_of(19), time_of(25))  # the frames around it


def test_a_cursor_or_live_start_past_the_stored_cursor_leaves_a_gap(tmp_path: Path) -> None:
    """--cursor N past the stored cursor, and --live, skip what lies between: each a gap."""
    relay = relay_cursor("wss://relay.example")
    write(tmp_path, map(frame, range(10, 20)), source=relay)
    write(tmp_path, map(frame, range(31, 35)), resume=30, source=relay)
    write(tmp_path, map(frame, range(50, 52)), resume="live", source=relay)
    assert rows(tmp_path) == [
        ("covered", 10, 19, "first start", 10),
        ("gap", 20, 30, "cursor option", 0),
        ("covered", 31, 34, "cursor option", 4),
        ("gap", 35, 49, "live start", 0),
        ("covered", 50, 51, "live start", 2),
    ]


def test_a_cursor_before_the_stored_one_overlaps_and_loses_nothing(tmp_path: Path) -> None:
    """--cursor N before the stored cursor processes some seqs again: no gap."""
    write(tmp_path, map(frame, range(10, 20)))
    write(tmp_path, map(frame, range(16, 22)), resume=15)
    assert rows(tmp_path) == [("covered", 10, 19, "first start", 10), ("covered", 16, 21, "cursor option", 6)]


def test_an_outdated_cursor_splits_the_run_around_the_seqs_it_lost(tmp_path: Path) -> None:
    """A relay's #info OutdatedCursor, then a frame past the next seq: the seqs between are a
    gap, and a new covered run follows it; one right after the cursor loses nothing."""
    relay = relay_cursor("wss://relay.example")
    frames = [*map(frame, range(10, 14)), info_frame("OutdatedCursor"), *map(frame, range(40, 43))]
    frames += [info_frame("OutdatedCursor"), frame(43)]
    write(tmp_path, frames, source=relay)
    assert rows(tmp_path) == [
        ("covered", 10, 13, "first start", 4),
        ("gap", 14, 39, "outdated cursor", 0),
        ("covered", 40, 43, "after gap", 4),
    ]


def test_an_outdated_cursor_at_a_restart_is_a_gap_after_the_stored_cursor(tmp_path: Path) -> None:
    """A restart whose relay no longer holds what follows the stored cursor says so first."""
    relay = relay_cursor("wss://relay.example")
    write(tmp_path, map(frame, range(10, 12)), source=relay)
    write(tmp_path, [info_frame("OutdatedCursor"), *map(frame, range(20, 22))], source=relay)
    assert rows(tmp_path) == [
        ("covered", 10, 11, "first start", 2),
        ("gap", 12, 19, "outdated cursor", 0),
        ("covered", 20, 21, "after gap", 2),
    ]


def test_a_relay_that_lost_what_followed_the_stored_cursor_is_a_gap_in_the_state(tmp_path: Path) -> None:
    """Against the loopback relay: a writer stops after 50 frames; by its restart the relay
    holds only the corpus' last 50, says the cursor is outdated, and the 50 between are a gap."""
    frames = corpus_frames()
    first = decode_frame(frames[0]).seq
    assert first is not None
    port = free_port()
    args = [*store_args(tmp_path), "--verify", "none", "--idle-exit", "1.5", "--recv-timeout", "30"]
    args += ["--study-users", str(write_users(tmp_path / "study.txt", [STUDY]))]
    for served in (frames[:50], frames[100:]):
        with LoopbackRelay(ReplayRelay(served), port=port) as loopback:
            assert write_main([*args, "--relay", loopback.url]) == 0
    assert rows(tmp_path) == [
        ("covered", first, first + 49, "first start", 50),
        ("gap", first + 50, first + 99, "outdated cursor", 0),
        ("covered", first + 100, first + 149, "after gap", 50),
    ]
    with StateStore(tmp_path / "s.sqlite") as state:
        assert {run.source for run in state.coverage.runs()} == {relay_cursor(loopback.url)}
