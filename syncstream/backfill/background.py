"""Backfill inside a running writer (``python -m syncstream.write --backfill``).

Study users due a backfill wait in a queue, unheld; at most ``concurrency`` are under way, and
only those are held: from the moment its job starts, a DID's live commits wait in the writer
(bounded in count and bytes by ``HoldLimits``, in time here) and the writer's cursor stays
before the first of them, so that a crash replays them. Each job fetches, verifies and walks
its repository on a thread of its own (``syncstream.backfill.job``); ``poll``, in the writer's
thread, writes what the jobs have ready for at most ``slice_seconds`` at a time, so that the
firehose keeps flowing (and ``/healthz`` stays 200) while a large repository is written.

A job that is done: its files are made durable, the DID recorded done, its held commits
applied in order. A job that fails, or whose hold overflows or outlives ``HoldLimits.seconds``:
recorded failed (retried after a backoff) and its held commits applied at once, in order. A
stop (``stop``) abandons every job, applies what was held, and records nothing: the next start
backfills those DIDs again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable

from syncstream.backfill.fetch import Fetcher
from syncstream.backfill.job import Job, Outcome
from syncstream.backfill.run import FLUSH_RECORDS, log_done, log_failure, write_records
from syncstream.write.writer import CacheWriter

__all__ = ["BackgroundBackfill"]

log = logging.getLogger("syncstream.backfill")

RESCAN_SECONDS = 5.0  # how often the state is read for study users to backfill (a #sync, a reload)


class BackgroundBackfill:
    def __init__(
        self,
        writer: CacheWriter,
        fetcher: Fetcher,
        *,
        concurrency: int = 4,
        scratch: str | None = None,
        slice_seconds: float = 0.05,
    ) -> None:
        self.writer = writer
        self.fetcher = fetcher
        self.concurrency = concurrency
        self.scratch = scratch
        self.slice_seconds = slice_seconds
        self.waiting: deque[str] = deque()
        self.running: dict[str, Job] = {}
        self._files: dict[str, int] = {}
        self._unflushed = 0  # records written since the last flush
        self.done = self.failed = self.abandoned = 0
        self._next_scan = 0.0
        self._population = writer.population  # a new one (user files reloaded): scan at once

    def counts(self) -> dict[str, int]:
        return {"done": self.done, "failed": self.failed, "running": len(self.running),
                "waiting": len(self.waiting)}  # fmt: skip

    def wanted(self) -> list[str]:
        """Study users whose repository is due: never backfilled, pending after a #sync, or
        failed and past its backoff."""
        return self.writer.context.state.backfills_due(sorted(self.writer.population.study), time.time())

    def enqueue(self, dids: Iterable[str]) -> None:
        queued = set(self.waiting)
        for did in dids:
            if did not in self.running and did not in queued:
                self.waiting.append(did)
                queued.add(did)

    def _start(self) -> None:
        while self.waiting and len(self.running) < self.concurrency:
            did = self.waiting.popleft()
            self.writer.hold(did)
            self.running[did] = Job(did, self.fetcher, scratch=self.scratch).start()
            self._files[did] = 0

    def poll(self) -> None:
        """In the writer's thread: fail overflowing holds, start jobs, write for a slice."""
        writer = self.writer
        for did, reason in list(writer.hold_overflows.items()):
            del writer.hold_overflows[did]
            if did in self.running:
                self._fail(did, reason)
        limit = writer.hold_limits.seconds
        for did, since in list(writer.held_since.items()):
            if did in self.running and time.monotonic() - since > limit:
                job = self.running[did]
                self._fail(
                    did, f"its backfill ({job.step}) outlived the {limit:g}s its live commits may be held"
                )
        self._start()
        ends = time.monotonic() + self.slice_seconds
        for did, job in list(self.running.items()):
            item = job.take()  # one batch at least, then more while the slice lasts
            while item is not None:
                if isinstance(item, Outcome):
                    self._finish(did, item)
                    break
                assert job.rev is not None
                self._files[did] += write_records(writer, did, job.rev, item)
                self._unflushed += len(item)
                if self._unflushed >= FLUSH_RECORDS:  # the batch's index rows, not held in memory
                    writer.flush()
                    self._unflushed = 0
                item = job.take() if time.monotonic() < ends else None
        now = time.monotonic()
        if now >= self._next_scan or writer.population is not self._population:
            self._next_scan = now + RESCAN_SECONDS
            self._population = writer.population
            writer.flush()  # a #sync seen since is recorded pending first
            self.enqueue(self.wanted())

    def _fail(self, did: str, reason: str) -> None:
        job = self.running.pop(did)
        job.abandon()
        self._files.pop(did, None)
        log_failure(did, reason)
        self.writer.flush()  # what was written of it is durable; it is not done
        self.writer.context.state.record_backfill(did, reason=reason)
        self.failed += 1
        self.writer.release(did)

    def _finish(self, did: str, outcome: Outcome) -> None:
        if outcome.reason is not None:
            self._fail(did, outcome.reason)
            return
        writer = self.writer
        del self.running[did]
        files = self._files.pop(did, 0)
        writer.flush()  # the repository's files are durable before the DID is recorded done
        writer.context.state.record_backfill(did, rev=outcome.rev, records=outcome.records)
        released = writer.release(did)
        self.done += 1
        log_done(did, outcome, files, held=released)

    def drain(self) -> None:
        """Run every backfill due to its end (a replay's: nothing else feeds ``poll``); a
        stop ends it early."""
        while self.waiting or self.running:
            if self.fetcher.stop.is_set():
                return
            self.poll()
            if self.running and all(job.queue.empty() for job in self.running.values()):
                time.sleep(0.02)

    def stop(self) -> int:
        """Abandon every job and apply the held commits, in order, as live ones (the writer can
        still write); nothing is recorded, so the next start backfills them again. How many
        jobs were abandoned."""
        self.fetcher.stop.set()
        abandoned = len(self.running)
        for did, job in list(self.running.items()):
            job.abandon()
            fields = {"did": did, "step": job.step}
            log.info(
                "backfill of %s abandoned while %s: retried at the next start", did, job.step,
                extra={"event": "backfill_abandoned", "fields": fields},
            )  # fmt: skip
            self.writer.release(did)
        for job in self.running.values():
            job.join(1.0)
        self.running.clear()
        self.abandoned += abandoned
        return abandoned

    def close(self) -> None:
        """Abandon every job without writing (the writer may be unable to): held commits are
        dropped, and replayed from the cursor, which never passed them, at the next start."""
        self.fetcher.stop.set()
        for job in self.running.values():
            job.abandon()
        self.running.clear()
        self.writer.forget_held()
        self.fetcher.close()
