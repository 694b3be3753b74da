"""One DID's backfill, off the caller's thread: fetch, verify, walk, hand over in batches.

A daemon thread fetches the repository to a scratch directory (``fetch``), opens it
(``repo``), verifies its signed commit against the key of the DID document the PDS was taken
from (``syncstream.verify``: version 3, this DID, signed by its key, the key refreshed once),
checks the whole MST, and only then walks it again, putting records in batches on a queue of
two: memory holds two batches whatever the repository's size, and the owner writes them
when it can (the writer between frames, outside its lock's long holds). A thread that is
abandoned (a stop, a hold overflow) stops at its next chunk or batch; a daemon thread never
keeps the process from exiting. Whatever happens, the scratch directory is removed, before
the outcome is handed over: an owner that has the outcome knows the directory is gone.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

from syncstream.backfill.fetch import Fetcher
from syncstream.backfill.repo import RepoFile, RepoRecord
from syncstream.errors import FetchError, RepoError, SyncstreamError
from syncstream.scratch import PREFIX
from syncstream.verify import verify_commit

__all__ = ["BATCH_RECORDS", "Job", "Outcome"]

BATCH_RECORDS = 500


class Outcome(NamedTuple):
    """The end of a job: ``reason`` None when every record was handed over."""

    rev: str | None
    records: int
    reason: str | None
    problems: dict[str, int]
    data: bytes | None = None  # the repository's MST root, under the verified commit


class _Abandoned(SyncstreamError):
    """The job was abandoned (a stop): what it did is done again by the next run."""


class Job:
    def __init__(self, did: str, fetcher: Fetcher, *, scratch: str | None = None) -> None:
        self.did = did
        self.fetcher = fetcher
        self.scratch = scratch
        self.queue: queue.Queue[list[RepoRecord] | Outcome] = queue.Queue(maxsize=2)
        self.abandoned = threading.Event()
        self.started = time.monotonic()
        self.step = "waiting"  # fetching, checking, walking: what a failure or a stop interrupted
        self.rev: str | None = None  # the repository's, once its commit is verified
        self.directory: Path | None = None  # its scratch directory, once made
        self._thread = threading.Thread(target=self._run, name=f"backfill {did}", daemon=True)

    def start(self, directory: Path | None = None) -> Job:
        """Run the job in ``directory`` (an empty scratch directory the caller made and
        recorded; None: one of the system's temporary directory)."""
        self.directory = directory or Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.scratch))
        self._thread.start()
        return self

    def abandon(self) -> None:
        self.abandoned.set()

    def join(self, timeout: float) -> None:
        """Give an abandoned job a moment to stop and remove its scratch directory (a transfer
        stops at its next chunk; a daemon thread never keeps the process)."""
        self._thread.join(timeout)

    def take(self) -> list[RepoRecord] | Outcome | None:
        """The next batch, or the outcome; None when nothing is ready yet."""
        try:
            return self.queue.get_nowait()
        except queue.Empty:
            return None

    def wait(self, timeout: float) -> list[RepoRecord] | Outcome | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _put(self, item: list[RepoRecord] | Outcome) -> None:
        while True:
            if self.abandoned.is_set() or self.fetcher.stop.is_set():
                raise _Abandoned
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        assert self.directory is not None
        try:
            outcome = self._walk(self.directory)
        except _Abandoned:
            outcome = None
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
        if outcome is not None:
            self._finish(outcome)

    def _walk(self, directory: Path) -> Outcome:
        records, rev, problems, data = 0, None, {}, None
        try:
            self.step = "fetching"
            fetched = self.fetcher.fetch(self.did, directory / "repo.car")
            self.step = "checking"
            repo = RepoFile(directory / "repo.car", scratch=directory)
            try:
                verdict = verify_commit(self.fetcher.documents, self.did, repo.commit)
                if verdict.verified is not True:
                    raise RepoError(f"not the account's signed history: {verdict.reason}")
                repo.check()
                rev = self.rev = repo.rev
                data = repo.data
                self.step = "walking"
                batch: list[RepoRecord] = []
                for record in repo.records():
                    batch.append(record)
                    records += 1
                    if len(batch) >= BATCH_RECORDS:
                        self._put(batch)
                        batch = []
                if batch:
                    self._put(batch)
                problems = dict(repo.problems)
            finally:
                repo.close()
            log_fields = f"{fetched.bytes:,} bytes from {fetched.pds} in {fetched.seconds:.1f}s"
            self.step = f"done ({log_fields})"
            return Outcome(rev, records, None, problems, data)
        except _Abandoned:
            raise
        except (FetchError, RepoError) as error:
            return Outcome(rev, records, str(error), problems)
        except Exception as error:  # that DID's trouble alone, whatever it is
            return Outcome(rev, records, f"{type(error).__name__}: {error}", problems)

    def _finish(self, outcome: Outcome) -> None:
        with contextlib.suppress(_Abandoned):
            self._put(outcome)
