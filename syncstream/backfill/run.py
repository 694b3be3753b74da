"""Backfilling DIDs: resolve, fetch, walk, route as creates, write, record. Failures are per DID.

Each DID's DID document is resolved with the atproto SDK's identity resolver (did:plc through
the PLC directory, did:web over HTTPS), its PDS (``#atproto_pds``) asked for the repository
with the SDK's client, and the CAR walked by its MST (``syncstream.backfill.repo``). Fetching
runs on a bounded pool of threads (network-bound); routing and writing run in the calling
thread, through the same registry and writer as live records, as creates with
``source = backfill``, the repository's rev and no seq. A record also seen live has the same
URI and cid, so the export keeps it once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, NamedTuple

from syncstream.backfill.repo import Repo, RepoError, read_repo
from syncstream.timestamps import micros
from syncstream.write.decode import Commit, RepoOp
from syncstream.write.writer import CacheWriter, utc_now

__all__ = ["BackfillResult", "Fetcher", "backfill_dids"]

log = logging.getLogger("syncstream.backfill")

PUBLIC_PLC = "https://plc.directory"


class BackfillResult(NamedTuple):
    did: str
    rev: str | None = None
    records: int = 0  # records in the repository
    files: int = 0  # cache files written (records the registry keeps)
    reason: str | None = None  # why it failed


class Fetcher:
    """Resolves DIDs and fetches repositories, with one resolver and one client per PDS for the
    whole run: building an HTTP client (its TLS context) costs more CPU than a small repository."""

    def __init__(self, *, plc_url: str, timeout: float) -> None:
        from atproto_identity.resolver import IdResolver  # noqa: PLC0415 (the SDK takes a second to import)

        self.timeout = timeout
        self.resolver = IdResolver(plc_url=plc_url, timeout=timeout)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _client(self, pds: str) -> Any:
        from atproto_client import Client  # noqa: PLC0415

        with self._lock:
            client = self._clients.get(pds)
            if client is None:
                client = self._clients[pds] = Client(base_url=f"{pds.rstrip('/')}/xrpc")
            return client

    def fetch(self, did: str) -> bytes:
        """Resolve ``did`` and fetch its repository's CAR from its PDS; ``RepoError`` (or an SDK
        error) says why not. Network only: the walk is the caller's (a thread walking a CAR
        would hold the GIL while the writer waits on its file syscalls)."""
        data = self.resolver.did.resolve_atproto_data(did)
        if not data.pds:
            raise RepoError(f"the DID document of {did} names no PDS (#atproto_pds)")
        car = self._client(data.pds).com.atproto.sync.get_repo({"did": did}, timeout=self.timeout)
        if not isinstance(car, bytes):
            raise RepoError("getRepo did not answer a CAR")
        return car


def _walk(did: str, car: bytes) -> Repo:
    repo = read_repo(car)
    if repo.did != did:
        raise RepoError(f"the PDS sent the repository of {repo.did}")
    return repo


def backfill_dids(
    writer: CacheWriter,
    dids: Iterable[str],
    *,
    plc_url: str = PUBLIC_PLC,
    concurrency: int = 4,
    timeout: float = 30.0,
) -> list[BackfillResult]:
    """Backfill each DID into the writer's cache; record each outcome in the state."""
    state = writer.context.state
    results: list[BackfillResult] = []
    fetcher = Fetcher(plc_url=plc_url, timeout=timeout)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill") as pool:
        futures = {pool.submit(fetcher.fetch, did): did for did in dids}
        for future in as_completed(futures):
            did = futures[future]
            try:
                repo = _walk(did, future.result())
            except Exception as error:  # one DID's trouble is that DID's: the others go on
                reason = f"{type(error).__name__}: {error}"
                fields = {"did": did, "reason": reason}
                log.warning(
                    "backfill of %s failed: %s",
                    did,
                    reason,
                    extra={"event": "backfill_failed", "fields": fields},
                )
                state.record_backfill(did, reason=reason)
                results.append(BackfillResult(did, reason=reason))
                continue
            files = _write(writer, repo)
            writer.flush()  # the files are durable before the DID is recorded done
            state.record_backfill(did, rev=repo.rev, records=len(repo.records))
            done: dict[str, object] = {
                "did": did,
                "rev": repo.rev,
                "records": len(repo.records),
                "files": files,
            }
            log.info(
                "backfilled %s at rev %s: %d records, %d files", did, repo.rev, len(repo.records), files,
                extra={"event": "backfilled", "fields": done},
            )  # fmt: skip
            results.append(BackfillResult(did, repo.rev, len(repo.records), files))
    return sorted(results)


def _write(writer: CacheWriter, repo: Repo) -> int:
    received = utc_now()
    files = 0
    for record in repo.records:
        created = record.record.get("createdAt")
        time = created if isinstance(created, str) and micros(created) is not None else received
        op = RepoOp("create", record.collection, record.rkey, record.cid, record.record)
        files += len(writer.apply_commit(Commit(None, repo.did, repo.rev, time, (op,), source="backfill")))
    return files
