"""Backfill inside a running writer (``python -m syncstream.write --backfill``).

Repositories are fetched on a bounded pool of threads while the stream flows; everything else
runs in the writer's thread, at ``poll``: a fetched repository is walked and written, made
durable, recorded done, and then the DID's live commits that were held meanwhile are applied,
in order. While a DID is held the writer's cursor stays before its first held commit, so a
crash replays them. A failed DID is recorded (retried at the writer's next start) and its held
commits are applied at once: the live stream is never dropped for a backfill.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from syncstream.backfill.run import Fetcher, _walk, _write
from syncstream.write.writer import CacheWriter

__all__ = ["BackgroundBackfill"]

log = logging.getLogger("syncstream.backfill")

RESCAN_SECONDS = 5.0  # how often the state is read for study users to backfill (a #sync, a reload)


class BackgroundBackfill:
    def __init__(
        self, writer: CacheWriter, *, plc_url: str, concurrency: int = 4, timeout: float = 30.0
    ) -> None:
        self.writer = writer
        self.fetcher = Fetcher(plc_url=plc_url, timeout=timeout)
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill")
        self.running: dict[str, Future[bytes]] = {}
        self.done = self.failed = 0
        self._next_scan = 0.0
        self._population = writer.population  # a new one (user files reloaded): scan at once

    def wanted(self) -> list[str]:
        """Study users whose repository is due: never backfilled, pending after a #sync, or
        failed and past its backoff."""
        return self.writer.context.state.backfills_due(sorted(self.writer.population.study), time.time())

    def enqueue(self, dids: Iterable[str]) -> None:
        for did in dids:
            if did not in self.running:
                self.writer.hold(did)
                self.running[did] = self.pool.submit(self.fetcher.fetch, did)

    def poll(self) -> None:
        """In the writer's thread: finish the fetched repositories; now and then, look for
        study users to backfill (a #sync, user files reloaded)."""
        for did, future in list(self.running.items()):
            if future.done():
                del self.running[did]
                self._finish(did, future)
        now = time.monotonic()
        if now >= self._next_scan or self.writer.population is not self._population:
            self._next_scan = now + RESCAN_SECONDS
            self._population = self.writer.population
            self.writer.flush()  # a #sync seen since is recorded pending first
            self.enqueue(self.wanted())

    def _finish(self, did: str, future: Future[bytes]) -> None:
        writer, state = self.writer, self.writer.context.state
        try:
            repo = _walk(did, future.result())
        except Exception as error:  # that DID's trouble alone
            reason = f"{type(error).__name__}: {error}"
            failed = {"did": did, "reason": reason}
            log.warning(
                "backfill of %s failed: %s", did, reason, extra={"event": "backfill_failed", "fields": failed}
            )
            state.record_backfill(did, reason=reason)
            self.failed += 1
            writer.release(did)
            return
        files = _write(writer, repo)
        writer.flush()  # the repository's files are durable before the DID is recorded done
        state.record_backfill(did, rev=repo.rev, records=len(repo.records))
        released = writer.release(did)
        self.done += 1
        done = {"did": did, "rev": repo.rev, "files": files, "records": len(repo.records), "held": released}
        log.info(
            "backfilled %s at rev %s: %d records, %d files; %d live commits applied after it",
            did, repo.rev, len(repo.records), files, released, extra={"event": "backfilled", "fields": done},
        )  # fmt: skip

    def drain(self) -> None:
        """Wait for every backfill under way, and finish it."""
        for did, future in list(self.running.items()):
            future.exception()  # waits
            del self.running[did]
            self._finish(did, future)

    def close(self) -> None:
        """Stop fetching; DIDs still held are released (their backfill is retried next start)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        for did in list(self.running):
            self.writer.release(did)
        self.running.clear()
