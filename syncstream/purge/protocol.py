"""The purge protocol: an account leaves the study, and everything collected of it or because of
it leaves the cache, the state and the Parquet output. Exactly once, whatever is killed when.

1. **Begin.** One transaction: the accounts leave the population for good (remembered as
   purged), and the purge is recorded as running. A running writer applies the new population
   at its next flush and says so in the state; the purge waits for that, so that nothing the
   writer writes from then on involves the accounts.
2. **Find.** Every cache file (in the tree and in export claims) and every Parquet row is read:
   rows authored by the accounts, and create or update rows their handler kept because of them,
   are involved; so are the deletes of the same (dataset, URI, follow status): a follow's
   follower and followee rows share a URI, and only the one kept because of them goes.
3. **Cache.** The involved cache files are removed.
4. **Parquet.** Each file holding involved rows is rewritten without them under a new name
   (``part-...~{purge}.parquet``), then the old file is removed: a rerun that finds both
   removes the old one, a rerun that finds only the new one has nothing left to do there.
5. **Finish.** The index forgets the involved URIs; the purge is recorded done, with its counts.

A purge killed at any step is finished by the next purge or export (same id, same accounts).
It holds the export lock throughout: purges and exports take turns.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from syncstream.cache import SET_ASIDE, WriterLock, read_bytes, remove_files
from syncstream.errors import CacheLockedError, SyncstreamError
from syncstream.failpoints import failpoint
from syncstream.handlers import HandlerConfig, Registry, datasets_of
from syncstream.listing import list_tree, new_id, read_lines
from syncstream.purge.rows import Involvement
from syncstream.records import CachedRecord, decode_record
from syncstream.state import PurgeRecord, StateStore

if TYPE_CHECKING:
    from syncstream.export.storage import ParquetStorage

__all__ = ["PurgeError", "PurgeSummary", "purge_accounts"]

log = logging.getLogger("syncstream.purge")

STAGING = ".export"  # the export's bookkeeping: claims to search, outputs not yet committed
EXPORT_LOCK = ".export.lock"


class PurgeError(SyncstreamError, RuntimeError):
    """A purge could not go on (it is recorded: the next purge or export finishes it)."""


class PurgeSummary(msgspec.Struct, kw_only=True):
    purge_id: str
    dids: tuple[str, ...]
    reason: str
    cache_files: int = 0  # cache files removed
    rows: int = 0  # Parquet rows removed ...
    parts: int = 0  # ... from this many Parquet files (each rewritten, or removed when emptied)
    datasets: dict[str, int] = msgspec.field(default_factory=dict)  # rows removed per dataset
    recovered: bool = False  # an interrupted purge, finished


def purge_accounts(
    cache_root: str,
    state: StateStore,
    storage: ParquetStorage | None,
    handlers: Registry,
    dids: Iterable[str] = (),
    *,
    reason: str = "withdrawal",
    locked: bool = False,
    writer_timeout: float = 60.0,
) -> list[PurgeSummary]:
    """Finish any interrupted purge, then purge ``dids`` (if any); a summary per purge run.

    ``storage`` is the Parquet output to purge (None: the cache and state only). ``locked``:
    the caller holds the export lock already (an export purging deleted accounts).
    Raises ``PurgeError`` when a running writer does not apply the new population within
    ``writer_timeout`` seconds.
    """
    wanted = sorted(set(dids))
    with contextlib.nullcontext() if locked else _export_lock(cache_root):
        done = [
            _Purge(cache_root, state, storage, handlers, record, writer_timeout).run(recovered=True)
            for record in state.purges(unfinished=True)
        ]
        if wanted:
            record = PurgeRecord(new_id(), tuple(wanted), reason, time.time(), None, None, None)
            done.append(_Purge(cache_root, state, storage, handlers, record, writer_timeout).run())
    return done


@contextlib.contextmanager
def _export_lock(root: str) -> Iterator[None]:
    """The export's lock, waited for: an export running now finishes first."""
    fd = os.open(os.path.join(root, EXPORT_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class _Row(NamedTuple):
    operation: str
    author: str
    uri: str | None
    record: dict[str, Any] | None
    status: str | None  # a follow's: follower or followee


class _Purge:
    def __init__(  # noqa: PLR0917 (one private call site)
        self,
        root: str,
        state: StateStore,
        storage: ParquetStorage | None,
        handlers: Registry,
        record: PurgeRecord,
        writer_timeout: float,
    ) -> None:
        self.root, self.state, self.storage, self.handlers = root, state, storage, handlers
        self.record = record
        self.writer_timeout = writer_timeout
        self.involvement = Involvement.of(record.dids, handlers)
        self.datasets = datasets_of(handlers)
        # (dataset, URI, follow status) of rows kept because of them: a follow's two rows share
        # its URI, and a study user's own follow of a purged account (the follower row) stays
        self.involved: set[tuple[str, str, str]] = set()
        self.summary = PurgeSummary(purge_id=record.purge_id, dids=record.dids, reason=record.reason)

    def run(self, *, recovered: bool = False) -> PurgeSummary:
        record = self.record
        if recovered:
            log.info("finishing purge %s of %s (interrupted)", record.purge_id, ", ".join(record.dids))
        self.summary.recovered = recovered
        self.state.begin_purge(record.purge_id, record.dids, record.reason, record.started_at)
        failpoint("purge.begun")
        self._wait_for_writer(self.state.population_version())
        cache_files = list(self._cache_files())
        parts = self._parts()
        for _, config, cached in cache_files:
            row = _Row(cached.operation, cached.author_did, cached.uri, cached.record, config.follow_status)
            self._note(config.dataset.name, config, row)
        for relative_path, dataset in parts:
            self._note_part(relative_path, dataset)
        doomed = [
            path
            for path, config, cached in cache_files
            if cached.author_did in self.involvement.dids
            or (config.dataset.name, cached.uri, config.follow_status or "") in self.involved
        ]
        doomed += self._set_aside_files()
        self.summary.cache_files = remove_files(doomed)
        failpoint("purge.cache_removed")
        for relative_path, dataset in parts:
            self._rewrite(relative_path, dataset)
        self.state.finish_purge(
            record.purge_id,
            uris={uri for _, uri, _ in self.involved},
            cache_files=self.summary.cache_files,
            rows=self.summary.rows,
            now=time.time(),
        )
        failpoint("purge.finished")
        return self.summary

    # step 1: the writer ---------------------------------------------------------------------

    def _wait_for_writer(self, version: int) -> None:
        """Return once no writer can write for the old population: none runs (one that starts
        now reads the new one), or the running one has committed the new version."""
        try:
            WriterLock(self.root).acquire().release()
            return
        except CacheLockedError:
            pass
        deadline = time.monotonic() + self.writer_timeout
        while self.state.seen_population() < version:
            if time.monotonic() > deadline:
                raise PurgeError(
                    f"the running writer did not apply the new population within {self.writer_timeout:.0f}s "
                    "(it does at its next flush: is it receiving frames?); the purge is recorded, "
                    "and the next purge or export finishes it"
                )
            time.sleep(0.05)

    # step 2: what is involved -------------------------------------------------------------

    def _cache_files(self) -> Iterator[tuple[str, HandlerConfig, CachedRecord]]:
        configs = list(self.handlers.values())
        by_key = {config.key: config for config in configs}
        roots = [self.root]
        staging = os.path.join(self.root, STAGING)
        with contextlib.suppress(FileNotFoundError), os.scandir(staging) as entries:
            roots += [
                e.path for e in entries if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
            ]
        for root in roots:
            for entry in list_tree(root, configs):
                path = os.path.join(root, entry.relpath)
                try:
                    with open(path, "rb") as handle:
                        cached = decode_record(handle.read())
                except (OSError, msgspec.DecodeError):
                    continue  # gone meanwhile, or not a cache record (the export sets those aside)
                yield path, by_key[entry.key], cached

    def _set_aside_files(self) -> list[str]:
        """The files in ``{cache}/.set-aside/`` that involve the accounts. They could not become
        rows, so they are read as bytes: one that decodes as a cache record goes by the rules of
        its kind, one that does not goes when it names an account at all (its text may be theirs)."""
        by_directory = {config.directory: config for config in self.handlers.values()}
        found = []
        directory = os.path.join(self.root, SET_ASIDE)
        with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
            for entry in entries:
                if not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    data = read_bytes(entry.path)
                except OSError:
                    continue
                if self._set_aside_involved(entry.name, data, by_directory):
                    found.append(entry.path)
        return found

    def _set_aside_involved(self, name: str, data: bytes, by_directory: Mapping[str, HandlerConfig]) -> bool:
        if any(did.encode() in data or did in name for did in self.involvement.dids):
            try:
                cached = decode_record(data)
            except msgspec.DecodeError:
                return True
            # set aside as its cache path with "/" as "~": the directory names its handler
            config = by_directory.get(os.path.dirname(name.replace("~", "/")))
            row = _Row(cached.operation, cached.author_did, cached.uri, cached.record, cached.follow_status)
            if config is None or cached.author_did in self.involvement.dids:
                return True
            return (
                self.involvement.selected(config, row.operation, row.author, row.record)
                or (
                    config.dataset.name,
                    cached.uri,
                    config.follow_status or "",
                )
                in self.involved
            )
        return False

    def _note(self, dataset: str, config: HandlerConfig | None, row: _Row) -> None:
        if row.uri is not None and self.involvement.selected(config, row.operation, row.author, row.record):
            self.involved.add((dataset, row.uri, row.status or ""))

    def _parts(self) -> list[tuple[str, str]]:
        """(relative path, dataset) of every Parquet file of the registry's datasets, but those
        an interrupted export has not committed (its recovery removes them)."""
        if self.storage is None:
            return []
        uncommitted = self._uncommitted_outputs()
        return [
            (path, name)
            for name in self.datasets
            for path in self.storage.list_parts(name)
            if path not in uncommitted
        ]

    def _uncommitted_outputs(self) -> set[str]:
        staging = os.path.join(self.root, STAGING)
        found: set[str] = set()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(staging):
                chunk = name.removesuffix(".outputs")
                if chunk != name and not name.startswith(".") and not self.state.claim_committed(chunk):
                    found.update(read_lines(os.path.join(staging, name)))
        return found

    def _note_part(self, relative_path: str, name: str) -> None:
        assert self.storage is not None
        dataset = self.datasets[name]
        table = self.storage.read(relative_path)
        if "record_json" not in table.column_names or "uri" not in table.column_names:
            return  # rows of an account's own (events): found by their author alone
        columns = [table.column(c).to_pylist() for c in ("operation", "record_type", "uri", "record_json")]
        statuses = (
            table.column("follow_status").to_pylist() if "follow_status" in table.column_names else None
        )
        authors = table.column(dataset.author_column).to_pylist()
        dids = self.involvement.dids
        for i, (operation, record_type, uri, record_json) in enumerate(zip(*columns, strict=True)):
            author = authors[i]
            if author not in dids and (record_json is None or not any(did in record_json for did in dids)):
                continue  # neither theirs nor naming them
            status = statuses[i] if statuses is not None else None
            config = self.involvement.handler(name, record_type, status)
            record = json.loads(record_json) if record_json is not None else None
            self._note(name, config, _Row(operation, author, uri, record, status))

    # step 4: Parquet ------------------------------------------------------------------------

    def _rewrite(self, relative_path: str, name: str) -> None:
        """Rewrite one file without the involved rows, under the purge's name, then remove it."""
        import pyarrow as pa  # noqa: PLC0415 (the purge of a cache alone needs none)

        assert self.storage is not None
        dataset = self.datasets[name]
        directory, base = relative_path.rsplit("/", 1)
        stem = base.removesuffix(".parquet")
        if stem.endswith(f"~{self.record.purge_id}"):
            return  # written by this purge: nothing involved is left in it
        target = f"{directory}/{stem.split('~', 1)[0]}~{self.record.purge_id}.parquet"
        table = self.storage.read(relative_path)
        authors = table.column(dataset.author_column).to_pylist()
        uris = table.column("uri").to_pylist() if "uri" in table.column_names else [None] * len(authors)
        statuses = (
            table.column("follow_status").to_pylist()
            if "follow_status" in table.column_names
            else [None] * len(authors)
        )
        dids, involved = self.involvement.dids, self.involved
        keep = [
            a not in dids and (name, u, s or "") not in involved
            for a, u, s in zip(authors, uris, statuses, strict=True)
        ]
        removed = keep.count(False)
        if removed == 0:
            return
        if not self.storage.exists(target):  # else written before a crash, whole: the old file goes
            kept = table.filter(pa.array(keep))
            if kept.num_rows:
                self.storage.write(target, kept)
            failpoint("purge.part_written")
        self.storage.remove([relative_path])
        failpoint("purge.part_replaced")
        self.summary.rows += removed
        self.summary.parts += 1
        self.summary.datasets[name] = self.summary.datasets.get(name, 0) + removed
