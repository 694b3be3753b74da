"""Backfilling DIDs: resolve, fetch, verify, walk, route as creates, write, record. Failures are
per DID.

Each DID's document is resolved with the atproto SDK (did:plc through the PLC directory,
did:web over HTTPS), its repository fetched from its PDS, its signed commit verified against
the document's key and its MST checked (``syncstream.backfill.job``), and its records routed
and written in the calling thread, batch by batch, through the same registry and writer as
live records: creates with ``source = backfill``, ``verified`` true, the repository's rev and
no seq. A record also seen live has the same URI and cid, so the export keeps it once.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from syncstream.backfill.fetch import Fetcher
from syncstream.backfill.job import Job, Outcome
from syncstream.backfill.repo import RepoRecord
from syncstream.failpoints import failpoint
from syncstream.timestamps import micros
from syncstream.write.decode import Commit, RepoOp
from syncstream.write.writer import CacheWriter, utc_now

__all__ = ["BackfillResult", "backfill_dids", "write_records"]

log = logging.getLogger("syncstream.backfill")

PUBLIC_PLC = "https://plc.directory"
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
    stop: threading.Event | None = None,
) -> list[BackfillResult]:
    """Backfill each DID into the writer's cache; record each outcome in the state. A stop
    abandons what is under way (not recorded: the next run does it again)."""
    stop = stop if stop is not None else fetcher.stop
    results: list[BackfillResult] = []
    waiting = deque(dids)
    running: dict[str, Job] = {}
    files: dict[str, int] = {}
    unflushed = 0
    while (waiting or running) and not stop.is_set():
        while waiting and len(running) < concurrency:
            did = waiting.popleft()
            running[did] = Job(did, fetcher, scratch=scratch).start()
            files[did] = 0
        for did, job in list(running.items()):
            item = job.wait(0.05 / len(running))
            while item is not None and not stop.is_set():
                if isinstance(item, Outcome):
                    del running[did]
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
    results += [BackfillResult(did, reason="not started", abandoned=True) for did in waiting]
    writer.flush()
    return sorted(results)


def _rev_of(job: Job) -> str:
    assert job.rev is not None, "a batch comes after the commit is verified"
    return job.rev


def _finish(writer: CacheWriter, did: str, outcome: Outcome, files: int) -> BackfillResult:
    state = writer.context.state
    if outcome.reason is not None:
        writer.flush()  # what was written is durable; the DID is not done
        log_failure(did, outcome.reason)
        state.record_backfill(did, reason=outcome.reason)
        return BackfillResult(did, outcome.rev, outcome.records, files, outcome.reason)
    writer.flush()  # the files are durable before the DID is recorded done
    failpoint("backfill.files_durable")
    state.record_backfill(did, rev=outcome.rev, records=outcome.records)
    log_done(did, outcome, files)
    return BackfillResult(did, outcome.rev, outcome.records, files)
