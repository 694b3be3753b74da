"""What seqs a writer run covers, and the gaps it knows of, kept until the cursor covers them.

Every frame with a seq is counted into the current covered run as it is processed; ``commit``
folds into the rows the frames that the cursor being stored covers, so that the state's
record of coverage is exactly the durable part of the run. A gap is known at the frame that
reveals it (the first one after it) and is stored with the cursor that covers that frame.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Literal

from syncstream.store import CoverageKind, CoverageReason, CoverageRow

__all__ = ["CoverageTracker"]

Resume = int | Literal["cursor", "live"]


class _Run:
    """A row being built: its durable part, and the frames processed that the cursor does not
    cover yet (a gap has none; it waits for the frame that revealed it)."""

    def __init__(self, number: int, kind: CoverageKind, reason: CoverageReason, revealed_by: int = 0) -> None:
        self.number, self.kind, self.reason, self.revealed_by = number, kind, reason, revealed_by
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.first_time: str | None = None
        self.last_time: str | None = None
        self.frames = 0
        self.seqs: list[int] = []
        self.times: list[str | None] = []


class CoverageTracker:
    """One writer run's coverage of ``source``. ``stored`` is the source's cursor when the run
    started and ``stored_time`` the relay's time of its last covered frame; ``resume`` how the
    run takes the stream up; ``replay`` whether the frames are a replay file's (one that starts
    past the stored cursor left out what lies between)."""

    def __init__(
        self,
        writer_run: str,
        source: str,
        *,
        stored: int | None,
        stored_time: str | None,
        resume: Resume,
        replay: bool,
    ) -> None:
        self.writer_run, self.source = writer_run, source
        self._stored, self._stored_time = stored, stored_time
        self._resume, self._replay = resume, replay
        self._runs: list[_Run] = []  # the rows not yet stored as they stand
        self._current: _Run | None = None
        self._numbers = 0
        self._outdated_after: int | None = None
        self._last_seq: int | None = None  # the last processed, durable or not
        self._last_time: str | None = None

    def frame(self, seq: int, time: str | None, *, skipped: int) -> None:
        """A frame at ``seq`` is being processed (``skipped``: frames at or below the cursor so
        far, which a replay that overlaps the stored cursor has)."""
        if self._current is None:
            self._start(seq, time, skipped)
        elif self._outdated_after is not None:
            self._after_outdated(seq, time)
        run = self._current
        assert run is not None
        run.seqs.append(seq)
        run.times.append(time)
        self._last_seq, self._last_time = seq, time

    def outdated(self) -> None:
        """The relay said the cursor is outdated: what follows it may be lost, as the next
        frame's seq will show."""
        self._outdated_after = self._last_seq if self._last_seq is not None else self._stored

    def _start(self, seq: int, time: str | None, skipped: int) -> None:
        stored, resume = self._stored, self._resume
        if stored is None:
            reason = (
                CoverageReason.FIRST_START
                if resume == "cursor"
                else CoverageReason.LIVE_START
                if resume == "live"
                else CoverageReason.CURSOR_OPTION
            )
        elif isinstance(resume, int):
            reason = CoverageReason.CURSOR_OPTION
            if resume > stored and seq > stored + 1:
                self._gap(stored + 1, seq - 1, self._stored_time, time, reason, seq)
        elif resume == "live":
            reason = CoverageReason.LIVE_START
            if seq > stored + 1:
                self._gap(stored + 1, seq - 1, self._stored_time, time, reason, seq)
        else:
            reason = CoverageReason.RESUMED
            if self._replay and not skipped and seq > stored + 1:
                self._gap(stored + 1, seq - 1, self._stored_time, time, CoverageReason.REPLAY_START, seq)
        if self._outdated_after is not None:  # said before the first frame of the run
            after, self._outdated_after = self._outdated_after, None
            if seq > after + 1:
                self._gap(after + 1, seq - 1, self._stored_time, time, CoverageReason.OUTDATED_CURSOR, seq)
                reason = CoverageReason.AFTER_GAP
        self._current = self._new(CoverageKind.COVERED, reason)

    def _after_outdated(self, seq: int, time: str | None) -> None:
        after, self._outdated_after = self._outdated_after, None
        assert after is not None
        if seq > after + 1:
            self._gap(after + 1, seq - 1, self._last_time, time, CoverageReason.OUTDATED_CURSOR, seq)
            self._current = self._new(CoverageKind.COVERED, CoverageReason.AFTER_GAP)

    def _gap(  # noqa: PLR0917 (a row's fields)
        self, first: int, last: int, before: str | None, after: str | None, reason: CoverageReason, seq: int
    ) -> None:
        gap = self._new(CoverageKind.GAP, reason, revealed_by=seq)
        gap.first_seq, gap.last_seq, gap.first_time, gap.last_time = first, last, before, after

    def _new(self, kind: CoverageKind, reason: CoverageReason, revealed_by: int = 0) -> _Run:
        self._numbers += 1
        run = _Run(self._numbers, kind, reason, revealed_by)
        self._runs.append(run)
        return run

    def commit(self, cursor: int | None) -> list[CoverageRow]:
        """The rows to store with ``cursor`` (the frames at or below it are durable)."""
        if cursor is None:
            return []
        rows: list[CoverageRow] = []
        kept: list[_Run] = []
        for run in self._runs:
            if run.kind == CoverageKind.GAP:
                if cursor >= run.revealed_by:
                    rows.append(self._row(run))
                else:
                    kept.append(run)
                continue
            durable = bisect_right(run.seqs, cursor)
            if durable:
                _fold(run, durable)
                rows.append(self._row(run))
            if run.seqs or run is self._current:
                kept.append(run)
        self._runs = kept
        return rows

    def _row(self, run: _Run) -> CoverageRow:
        return CoverageRow(
            self.writer_run, run.number, self.source, run.kind, run.first_seq, run.last_seq,
            run.first_time, run.last_time, run.reason, run.frames,
        )  # fmt: skip


def _fold(run: _Run, count: int) -> None:
    """Move the first ``count`` pending frames into the run's durable part."""
    seqs, times = run.seqs[:count], run.times[:count]
    if run.first_seq is None:
        run.first_seq = seqs[0]
    if run.first_time is None:
        run.first_time = next((t for t in times if t is not None), None)
    run.last_seq = seqs[-1]
    run.last_time = next((t for t in reversed(times) if t is not None), run.last_time)
    run.frames += count
    del run.seqs[:count], run.times[:count]
