"""The write loop: frames -> decoded commits -> routed writes -> cache files, in durable batches.

The cursor is persisted only after the files of every frame it covers are on disk (flushed with
``os.sync``), in the same SQLite transaction as the index rows of those files.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec

from syncstream.context import CacheWriteContext
from syncstream.handlers import write_record
from syncstream.types import HandlerKey, Operation
from syncstream.write.decode import Commit, decode_frame
from syncstream.write.route import ROUTED_COLLECTIONS, CacheWrite, route_commit

__all__ = ["CacheWriter", "WriteSummary", "utc_now"]

log = logging.getLogger("syncstream.write")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class WriteSummary(msgspec.Struct, kw_only=True):
    frames: dict[str, int]
    ops: dict[str, int]
    files: dict[str, int]
    rejections: dict[str, int]
    skipped_below_cursor: int
    cursor: int | None


class CacheWriter:
    """Applies frames or decoded commits to the cache; ``flush`` makes a batch durable."""

    def __init__(
        self,
        context: CacheWriteContext,
        *,
        flush_frames: int = 5000,
        flush_seconds: float = 2.0,
        durable: bool = True,
    ) -> None:
        self.context = context
        self.flush_frames = flush_frames
        self.flush_seconds = flush_seconds
        self.durable = durable
        self.cursor = context.state.cursor()  # the last seq committed as durable
        self.last_seq = self.cursor  # the last seq processed (written, maybe not yet durable)
        self.frames: Counter[str] = Counter()
        self.ops: Counter[str] = Counter()
        self.files: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.skipped = 0
        self._pending_seq: int | None = None
        self._pending_index: dict[str, set[HandlerKey]] = {}  # this batch's rows, not yet committed
        self._pending_frames = 0
        self._last_flush = time.monotonic()
        self._logged_reasons: set[str] = set()

    # frames -------------------------------------------------------------------------------

    def process_frame(self, frame: bytes) -> None:
        decoded = decode_frame(frame, ROUTED_COLLECTIONS)
        seq = decoded.seq
        if seq is not None and self.last_seq is not None and seq <= self.last_seq:
            self.skipped += 1
            return
        self.frames[decoded.kind] += 1
        for problem in decoded.problems:
            self._reject(problem, f"seq {seq}")
        if decoded.commit is not None:
            self.apply_commit(decoded.commit)
        if seq is not None:
            self._pending_seq = self.last_seq = seq
        self._pending_frames += 1
        if self._pending_frames >= self.flush_frames or (
            time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def process_frames(self, frames: Iterable[bytes]) -> WriteSummary:
        for frame in frames:
            self.process_frame(frame)
        self.flush()
        return self.summary()

    # commits ------------------------------------------------------------------------------

    def apply_commit(self, commit: Commit) -> list[CacheWrite]:
        """Route and write one decoded commit (the library entry point for other pipelines)."""
        ctx = self.context
        for op in commit.ops:
            self.ops[op.action] += 1
        deleted = [
            f"at://{commit.repo}/{op.collection}/{op.rkey}"
            for op in commit.ops
            if op.action == "delete" and op.collection in ROUTED_COLLECTIONS
        ]
        prior = self._cached_keys(deleted) if deleted else {}
        writes, rejections = route_commit(commit, ctx.population, prior, utc_now())
        for rejection in rejections:
            self._reject(rejection.reason, rejection.uri)
        for key, record in writes:
            write_record(ctx.cache_root, ctx.handlers[key], record)
            self.files[key.value] += 1
            if record.operation == Operation.CREATE:
                self._pending_index.setdefault(record.uri, set()).add(key)
        return writes

    def _cached_keys(self, uris: list[str]) -> dict[str, frozenset[HandlerKey]]:
        found = dict(self.context.state.cached_keys(uris))
        for uri in uris:
            pending = self._pending_index.get(uri)
            if pending:
                found[uri] = found.get(uri, frozenset()) | pending
        return found

    def _reject(self, reason: str, where: str) -> None:
        self.rejections[reason] += 1
        if reason not in self._logged_reasons:
            self._logged_reasons.add(reason)
            log.warning("rejected (%s): %s; further rejections of this kind are only counted", reason, where)

    # durability ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Make the written files durable, then commit the cursor and index rows that cover them."""
        if self._pending_frames == 0 and self._pending_seq is None and not self._pending_index:
            return
        if self.durable:
            os.sync()
        self.context.state.commit(
            self._pending_seq, ((uri, key) for uri, keys in self._pending_index.items() for key in keys)
        )
        self._pending_index.clear()
        if self._pending_seq is not None:
            self.cursor = self._pending_seq
        self._pending_seq = None
        self._pending_frames = 0
        self._last_flush = time.monotonic()

    def summary(self) -> WriteSummary:
        return WriteSummary(
            frames=dict(self.frames),
            ops=dict(self.ops),
            files=dict(self.files),
            rejections=dict(self.rejections),
            skipped_below_cursor=self.skipped,
            cursor=self.cursor,
        )
