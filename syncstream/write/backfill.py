"""Backfilling DIDs into the cache: resolve, fetch, verify, walk (``syncstream.backfill``), then
route as creates, write and record here, through the writer. Failures are per DID.

Each DID's document is resolved with the atproto SDK (did:plc through the PLC directory,
did:web over HTTPS), its repository fetched from its PDS, its signed commit verified against
the document's key and its MST checked (``syncstream.backfill.job``), and its records routed
and written in the calling thread, batch by batch, through the same registry and writer as
live records: creates with ``source = backfill``, ``verified`` true, the repository's rev and
no seq. A record also seen live has the same URI and cid, so the export keeps it once.

``backfill_dids`` runs DIDs one after another (``python -m syncstream.backfill``);
``BackgroundBackfill`` runs them inside a running writer (``python -m syncstream.write
--backfill``). Study users due a backfill wait in a queue, unheld; at most ``concurrency`` are under way, and
only those are held: from the moment its job starts, a DID's live commits wait in the writer
(bounded in count, bytes and time by ``HoldLimits``) and the writer's cursor stays
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
from typing import NamedTuple

from syncstream.backfill.fetch import Fetcher
from syncstream.backfill.job import Job, Outcome
from syncstream.backfill.repo import RepoRecord
from syncstream.failpoints import failpoint
from syncstream.firehose.decode import Commit, RepoOp
from syncstream.scratch import forget_if_gone, make_scratch, remove_scratch
from syncstream.signals import StopRequest
from syncstream.store.chains import Link
from syncstream.timestamps import micros, utc_now
from syncstream.write.writer import CacheWriter

__all__ = ["BackfillResult", "BackgroundBackfill", "backfill_dids", "write_records"]

log = logging.getLogger("syncstream.backfill")

FLUSH_RECORDS = 10_000  # a batch's index rows are committed this often: memory stays bounded


class BackfillResult(NamedTuple):
    did: str
    rev: str | None = None
    records: int = 0  # records in the repository
    files: int = 0  # cache files written (records the registry keeps)
    reason: str | None = None  # why it failed
    abandoned: bool = False  # stopped before it finished: retried by the next run


def write_records(writer: CacheWriter, did: str, rev: str, records: Iterable[RepoRecord]) -> int:
    """Route and write a repository's records as verified creates; the files written."""
    received = utc_now()
    files = 0
    for record in records:
        created = record.record.get("createdAt")
        time = created if isinstance(created, str) and micros(created) is not None else received
        op = RepoOp("create", record.collection, record.rkey, record.cid, record.record)
        commit = Commit(None, did, rev, time, (op,), source="backfill", verified=True)
        files += len(writer.apply_commit(commit))
    return files


def log_failure(did: str, reason: str) -> None:
    log.warning(
        "backfill of %s failed: %s", did, reason,
        extra={"event": "backfill_failed", "fields": {"did": did, "reason": reason}},
    )  # fmt: skip


def log_done(did: str, outcome: Outcome, files: int, held: int | None = None) -> None:
    fields: dict[str, object] = {"did": did, "rev": outcome.rev, "records": outcome.records, "files": files}
    fields.update({f"passed_over_{k}": v for k, v in outcome.problems.items()})
    if held is not None:
        fields["held"] = held
    log.info(
        "backfilled %s at rev %s: %d records, %d files%s", did, outcome.rev, outcome.records, files,
        "" if held is None else f"; {held} live commits applied after it",
        extra={"event": "backfilled", "fields": fields},
    )  # fmt: skip


def backfill_dids(
    writer: CacheWriter,
    dids: Iterable[str],
    fetcher: Fetcher,
    *,
    concurrency: int = 4,
    scratch: str | None = None,
    stop: StopRequest | None = None,
) -> list[BackfillResult]:
    """Backfill each DID into the writer's cache; record each outcome in the state. A stop
    abandons what is under way (not recorded: the next run does it again)."""
    stop = stop if stop is not None else fetcher.stop
    _remove_leftovers(writer)
    results: list[BackfillResult] = []
    waiting = deque(dids)
    running: dict[str, Job] = {}
    files: dict[str, int] = {}
    unflushed = 0
    while (waiting or running) and not stop.is_set():
        while waiting and len(running) < concurrency:
            did = waiting.popleft()
            running[did] = _start(writer, Job(did, fetcher, scratch=scratch))
            files[did] = 0
        for did, job in list(running.items()):
            item = job.wait(0.05 / len(running))
            while item is not None and not stop.is_set():
                if isinstance(item, Outcome):
                    del running[did]
                    forget_if_gone(writer.context.state.catalog, job.directory)
                    results.append(_finish(writer, did, item, files.pop(did)))
                    break
                files[did] += write_records(writer, did, _rev_of(job), item)
                failpoint("backfill.batch_written")
                unflushed += len(item)
                if unflushed >= FLUSH_RECORDS:
                    writer.flush()
                    unflushed = 0
                item = job.take()
    for did, job in running.items():
        job.abandon()
        results.append(BackfillResult(did, reason=f"abandoned while {job.step}", abandoned=True))
    for job in running.values():
        job.join(1.0)
        forget_if_gone(writer.context.state.catalog, job.directory)
    results += [BackfillResult(did, reason="not started", abandoned=True) for did in waiting]
    writer.flush()
    return sorted(results)


def _remove_leftovers(writer: CacheWriter) -> None:
    """Scratch a killed backfill left (a whole repository): the writer holds the cache, so no
    other backfill of this store is using any."""
    removed = remove_scratch(writer.context.state.catalog)
    if removed:
        log.info("removed %d scratch directories an interrupted backfill left", removed,
                 extra={"event": "scratch_removed", "fields": {"directories": removed}})  # fmt: skip


def _start(writer: CacheWriter, job: Job) -> Job:
    """Start ``job`` in a scratch directory the catalog knows before the repository is in it."""
    catalog = writer.context.state.catalog
    return job.start(make_scratch(catalog, job.did, job.scratch, time.time()))


def _rev_of(job: Job) -> str:
    assert job.rev is not None, "a batch comes after the commit is verified"
    return job.rev


def _finish(writer: CacheWriter, did: str, outcome: Outcome, files: int) -> BackfillResult:
    state = writer.context.state
    if outcome.reason is not None:
        writer.flush()  # what was written is durable; the DID is not done
        log_failure(did, outcome.reason)
        state.backfills.record(did, reason=outcome.reason)
        return BackfillResult(did, outcome.rev, outcome.records, files, outcome.reason)
    if outcome.rev is not None:  # the verified stream takes the account's chain up from here
        writer.chains.start(did, Link(outcome.rev, outcome.data))
    writer.flush()  # the files are durable before the DID is recorded done
    failpoint("backfill.files_durable")
    state.backfills.record(did, rev=outcome.rev, records=outcome.records)
    log_done(did, outcome, files)
    return BackfillResult(did, outcome.rev, outcome.records, files)


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
        _remove_leftovers(writer)

    def counts(self) -> dict[str, int]:
        return {"done": self.done, "failed": self.failed, "running": len(self.running),
                "waiting": len(self.waiting)}  # fmt: skip

    def wanted(self) -> list[str]:
        """Study users whose repository is due: never backfilled, pending after a #sync, or
        failed and past its backoff."""
        return self.writer.context.state.backfills.due(sorted(self.writer.population.study), time.time())

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
            self.running[did] = _start(self.writer, Job(did, self.fetcher, scratch=self.scratch))
            self._files[did] = 0

    def poll(self) -> None:
        """In the writer's thread: fail overflowing holds, start jobs, write for a slice."""
        writer = self.writer
        for did, reason in writer.holds.take_overflows().items():
            if did in self.running:
                self._fail(did, reason)
        limit = writer.holds.limits.seconds
        for did in writer.holds.outlived():
            if did in self.running:
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
        self.writer.context.state.backfills.record(did, reason=reason)
        self.failed += 1
        self.writer.release(did)

    def _finish(self, did: str, outcome: Outcome) -> None:
        if outcome.reason is not None:
            self._fail(did, outcome.reason)
            return
        writer = self.writer
        job = self.running.pop(did)
        forget_if_gone(writer.context.state.catalog, job.directory)
        files = self._files.pop(did, 0)
        if outcome.rev is not None:  # the chain starts at the repository (unless the stream is past it)
            writer.chains.start(did, Link(outcome.rev, outcome.data))
        writer.flush()  # the repository's files are durable before the DID is recorded done
        writer.context.state.backfills.record(did, rev=outcome.rev, records=outcome.records)
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
            forget_if_gone(self.writer.context.state.catalog, job.directory)
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
