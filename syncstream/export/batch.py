"""The export protocol: claim, write, commit, remove. Exactly once, whatever is killed when.

1. **Claim.** The claim's id is written to ``{cache}/.export/{claim}.claim``; then each handler
   directory is renamed, whole, to ``{cache}/.export/{claim}/{handler dir}``: a few renames,
   however many files. The writer recreates a directory on its next write, so what it writes
   from then on is left for the next export, and what was claimed no longer changes.
2. **Write.** The claimed files are read in chunks of at most ``batch_files`` files and about
   ``batch_bytes`` bytes (bounded memory). For each chunk ``{chunk}.files`` lists them; rows are
   built, deduplicated within the chunk and against the keys already exported (kept for the
   relay's replay window); the Parquet names, derived from the chunk id, are recorded in
   ``{chunk}.outputs`` and then written (by the part writer: a helper process, or inline).
3. **Commit.** Once the part writer has answered that every part is written, this process,
   and only this one, commits: one SQLite transaction records the chunk's keys and the chunk.
4. **Remove.** The chunk's files go (or, with ``remove=False``, go back into the tree), then its
   bookkeeping; once every chunk is done, the claim's directory and ``.claim`` file.

A crash before 3 leaves an uncommitted chunk: the next export deletes its recorded outputs, and
its files, still in the claim, are exported again. A crash after 3 leaves a committed chunk: the
next export finishes step 4. A clean failure (an exception, a helper that died) finishes the
removal of committed chunks, removes what it can of the others and puts the rest of the claim
back into the tree. Each step boundary has a named failpoint (``syncstream.failpoints``).

A cache file that cannot become a row (not a cache record, a time or seq out of range) is set
aside in ``{cache}/.set-aside/`` and counted; symbolic links inside the cache are never followed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import msgspec

from syncstream.cache import (
    SET_ASIDE,
    SymlinkInCacheError,
    check_no_links,
    make_directories,
    read_bytes,
    remove_files,
)
from syncstream.context import BatchExportContext
from syncstream.datasets import Dataset, partition_date
from syncstream.errors import CacheLockedError
from syncstream.export.listing import Entry, list_tree, new_id, read_lines, write_text_atomic
from syncstream.export.parts import Part
from syncstream.failpoints import failpoint
from syncstream.handlers import datasets_of
from syncstream.paths import bounded_name
from syncstream.purge.protocol import PurgeError, PurgeSummary, purge_accounts
from syncstream.state import ExportKey, export_key
from syncstream.timestamps import is_seq, micros
from syncstream.views import FileHead, decode_head

__all__ = ["DatasetSummary", "ExportSummary", "export_batch"]

log = logging.getLogger("syncstream.export")

STAGING = ".export"
EXPORT_LOCK = ".export.lock"


class DatasetSummary(msgspec.Struct, kw_only=True):
    rows: int = 0
    files: int = 0
    bytes: int = 0


class ExportSummary(msgspec.Struct, kw_only=True):
    datasets: dict[str, DatasetSummary]
    cache_files: int = 0  # cache files read (and, unless kept, removed)
    duplicates: int = 0  # rows dropped as already exported or repeated within a batch
    unreadable: int = 0  # cache files that could not become a row (moved to .set-aside/)
    links_skipped: int = 0  # symbolic links inside the cache, left alone
    recovered_claims: int = 0  # claims or chunks left by an earlier export that this one finished
    batches: int = 0
    dry_run: bool = False
    purges: list[PurgeSummary] = msgspec.field(default_factory=list)  # run first: deleted accounts

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.datasets.values())


class _Planned(NamedTuple):
    relative_path: str  # under the storage's base, named after the chunk
    dataset: Dataset
    files: list[bytes]  # the part's cache files ...
    keys: list[ExportKey]  # ... and their keys, row by row


class _Chunk:
    """One chunk of a claim on its way through write, commit and remove."""

    def __init__(self, chunk_id: str, claim_dir: str, entries: Sequence[Entry], data: list[bytes]) -> None:
        self.id, self.claim_dir, self.entries = chunk_id, claim_dir, entries
        self.data = data  # each entry's bytes, read before the chunk is listed
        self.planned: list[_Planned] = []
        self.released: list[ExportKey] = []  # keys found exported, whose files this removes
        self.committed = False

    @property
    def keys(self) -> list[ExportKey]:
        return [key for planned in self.planned for key in planned.keys]


def _unexportable(head: FileHead) -> str | None:
    """Why a decoded cache file cannot be a row (the same checks as the writer's), or None."""
    if head.seq is not None and not is_seq(head.seq):
        return f"seq {head.seq} is not an int64"
    if micros(head.event_time) is None:
        return f"event_time {head.event_time!r} is not a datetime"
    if micros(head.synctimestamp) is None:
        return f"synctimestamp {head.synctimestamp!r} is not a datetime"
    return None


class _Exporter:
    def __init__(
        self,
        context: BatchExportContext,
        *,
        remove: bool,
        dry_run: bool,
        progress: Callable[[ExportSummary], None] | None,
    ) -> None:
        self.context = context
        self.parts = context.parts
        self.root = context.cache_root
        self.staging = os.path.join(self.root, STAGING)
        self.remove = remove
        self.dry_run = dry_run
        self.progress = progress
        self.handlers = list(context.handlers.values())
        self.by_dir = {config.directory: config.key for config in self.handlers}
        self.dataset_of = {config.key: config.dataset for config in self.handlers}
        self.dataset_named = datasets_of(context.handlers)
        self.summary = ExportSummary(datasets={}, dry_run=dry_run)
        self._uncommitted: set[ExportKey] = set()  # keys of parts written, not yet committed
        self._finishing: list[str] = []  # committed chunks whose removal was handed on

    # the protocol ---------------------------------------------------------------------------

    def run(self) -> ExportSummary:
        check_no_links(self.root, self.staging)
        os.makedirs(self.staging, exist_ok=True)
        if self.dry_run:
            for entries, data in self._read_chunks(self.root, self._listable(self.root)):
                for planned in self._plan(_Chunk("dry-run", self.root, entries, data)):
                    stats = self.summary.datasets.setdefault(planned.dataset.name, DatasetSummary())
                    stats.rows += len(planned.keys)
                self._done_batch()
            return self.summary
        self._recover()
        window = self.context.dedup_window_hours * 3600
        self.context.state.prune_exported(time.time() - window, slack=window / 10)
        claim_id = new_id()
        if self._claim(claim_id):
            self._export_claim(claim_id)
        return self.summary

    def _listable(self, root: str) -> list[str]:
        """The handler directories under ``root`` that are real directories: a link is left
        alone (and counted), never followed."""
        found = []
        for config in self.handlers:
            try:
                check_no_links(root, os.path.join(root, config.directory))
            except SymlinkInCacheError as error:
                self.summary.links_skipped += 1
                log.warning("left alone: %s is a symbolic link inside the cache", error.filename)
                continue
            found.append(config.directory)
        return found

    def _claim(self, claim_id: str) -> bool:
        """Move every non-empty handler directory into the claim; False when there was none."""
        listable = set(self._listable(self.root))
        present = [
            config.directory
            for config in self.handlers
            if config.directory in listable
            and next(config.read_strategy(os.path.join(self.root, config.directory)), None) is not None
        ]
        if not present:
            return False
        write_text_atomic(self._path(f"{claim_id}.claim"), "".join(f"{d}\n" for d in present))
        failpoint("export.claim_manifest")
        claim_dir = self._path(claim_id)
        for directory in present:
            target = os.path.join(claim_dir, directory)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile (a reset)
                os.rename(os.path.join(self.root, directory), target)
            failpoint("export.claim_rename")
        return True

    def _read_chunks(self, root: str, directories: list[str]) -> Iterator[tuple[list[Entry], list[bytes]]]:
        """The cache files under ``root``, read, in chunks of at most ``batch_files`` files and
        about ``batch_bytes`` bytes (a file larger than that is a chunk of its own)."""
        most_files, most_bytes = self.context.batch_files, self.context.batch_bytes
        handlers = [config for config in self.handlers if config.directory in directories]
        prefix = root + "/"
        entries: list[Entry] = []
        data: list[bytes] = []
        size = 0
        for entry in list_tree(root, handlers):
            try:
                content = read_bytes(prefix + entry.relpath)
            except FileNotFoundError:  # removed meanwhile (a reset, a recovery's removal)
                continue
            except OSError as error:  # a link where a file was listed, a file gone unreadable
                self._set_aside(prefix + entry.relpath, entry, error)
                continue
            entries.append(entry)
            data.append(content)
            size += len(content)
            if len(entries) >= most_files or size >= most_bytes:
                yield entries, data
                entries, data, size = [], [], 0
        if entries:
            yield entries, data

    def _export_claim(self, claim_id: str) -> None:
        """Chunk by chunk, two in flight: chunk N+1 is read and its parts submitted before
        chunk N is committed and removed, so that a helper writes Parquet meanwhile."""
        claim_dir = self._path(claim_id)
        in_flight: deque[_Chunk] = deque()
        try:
            for entries, data in self._read_chunks(claim_dir, self._listable(claim_dir)):
                chunk = _Chunk(new_id(), claim_dir, entries, data)
                in_flight.append(chunk)
                self._start(chunk)
                while len(in_flight) > 1:
                    self._complete(in_flight[0])
                    in_flight.popleft()
            while in_flight:
                self._complete(in_flight[0])
                in_flight.popleft()
            self._settle()
        except Exception:
            self._fail_claim(claim_id, in_flight)
            raise
        shutil.rmtree(claim_dir, ignore_errors=True)
        failpoint("export.claim_removed")
        self._drop(f"{claim_id}.claim")

    def _start(self, chunk: _Chunk) -> None:
        """List the chunk, plan its parts, record their names, submit them."""
        write_text_atomic(
            self._path(f"{chunk.id}.files"),
            os.path.basename(chunk.claim_dir) + "\n" + "".join(f"{e.relpath}\n" for e in chunk.entries),
        )
        failpoint("export.chunk_listed")
        chunk.planned = self._plan(chunk)
        chunk.data = []  # planned: the parts hold what they need
        write_text_atomic(
            self._path(f"{chunk.id}.outputs"), "".join(f"{p.relative_path}\n" for p in chunk.planned)
        )
        failpoint("export.outputs_recorded")
        if chunk.planned:
            self.parts.submit([Part(p.relative_path, p.dataset, p.files) for p in chunk.planned])
            for planned in chunk.planned:
                self._uncommitted.update(planned.keys)
                planned.files.clear()  # submitted: the part writer has them (memory is bounded)

    def _complete(self, chunk: _Chunk) -> None:
        """Wait until the chunk's parts are written, commit it, then remove its files."""
        sizes = self.parts.sizes() if chunk.planned else []
        keys = chunk.keys
        self.context.state.commit_export(
            chunk.id,
            keys,
            time.time(),
            pinned=not self.remove,
            released=chunk.released if self.remove else (),
        )
        failpoint("export.committed")
        chunk.committed = True
        self._uncommitted.difference_update(keys)
        for planned, size in zip(chunk.planned, sizes, strict=True):
            stats = self.summary.datasets.setdefault(planned.dataset.name, DatasetSummary())
            stats.rows += len(planned.keys)
            stats.files += 1
            stats.bytes += size
        self._finish_chunk(chunk.id, chunk.claim_dir, chunk.entries)
        self._done_batch()

    def _fail_claim(self, claim_id: str, in_flight: Sequence[_Chunk]) -> None:
        """After a clean failure: finish what was committed, remove what was not (or leave it
        recorded for the next export), and put the rest of the claim back into the tree."""
        for chunk in in_flight:
            self._uncommitted.difference_update(chunk.keys)
        if self.parts.healthy():
            with contextlib.suppress(Exception):
                self.parts.sync()  # no removal may still run while the claim is put back
        self._finishing.clear()
        for name in sorted(os.listdir(self.staging)):
            if not name.endswith(".files") or name.startswith("."):
                continue
            chunk_id = name.removesuffix(".files")
            lines = read_lines(self._path(name))
            if lines[:1] != [claim_id]:
                continue
            if self.context.state.claim_committed(chunk_id):
                remove_files(os.path.join(self.staging, claim_id, relpath) for relpath in lines[1:])
                self._drop(f"{chunk_id}.outputs", f"{chunk_id}.files")
                self.context.state.forget_claims([chunk_id])
                continue
            try:
                self.parts.remove(read_lines(self._path(f"{chunk_id}.outputs")))
            except Exception as error:
                log.warning("export chunk %s: parts left for the next export to remove (%s)", chunk_id, error)
                continue
            self._drop(f"{chunk_id}.outputs", f"{chunk_id}.files")
        claim_dir = self._path(claim_id)
        self._restore(claim_dir, list(list_tree(claim_dir, self.handlers)))
        self._drop(f"{claim_id}.claim")
        shutil.rmtree(claim_dir, ignore_errors=True)

    def _finish_chunk(self, chunk_id: str, claim_dir: str, chunk: Sequence[Entry]) -> None:
        """Remove a committed chunk's files, then its bookkeeping (handed to the part writer,
        whose helper does it beside the next chunk's Parquet)."""
        bookkeeping = [self._path(f"{chunk_id}.outputs"), self._path(f"{chunk_id}.files")]
        if self.remove:
            self.parts.finish([f"{claim_dir}/{e.relpath}" for e in chunk], bookkeeping)
        else:
            self._restore(claim_dir, chunk)
            remove_files(bookkeeping)
        self._finishing.append(chunk_id)

    def _settle(self) -> None:
        """Wait for the handed-on removals; then the committed chunks are done with."""
        self.parts.sync()
        self.context.state.forget_claims(self._finishing)
        self._finishing.clear()

    def _plan(self, chunk: _Chunk) -> list[_Planned]:
        """Turn the chunk's files into one part per (dataset, partition date), deduplicated:
        within the chunk the latest seq wins; keys already exported, or in a part written and
        not yet committed, are dropped. A file that cannot be a row is set aside."""
        rows: dict[ExportKey, tuple[int, tuple[str, str], bytes]] = {}  # key -> (seq, where, file)
        # (a backfilled row has no seq: the same version seen live wins)
        prefix = chunk.claim_dir + "/"
        decode, dataset_of = decode_head, self.dataset_of
        for entry, data in zip(chunk.entries, chunk.data, strict=True):
            try:
                head = decode(data)
            except msgspec.DecodeError as error:
                self._set_aside(prefix + entry.relpath, entry, error)
                continue
            problem = _unexportable(head)
            if problem is not None:
                self._set_aside(prefix + entry.relpath, entry, ValueError(problem))
                continue
            dataset = dataset_of[entry.key].name
            key = export_key(dataset, head.uri, head.operation, head.follow_status, head.cid)
            seq = -1 if head.seq is None else head.seq
            seen = rows.get(key)
            if seen is not None:
                self.summary.duplicates += 1
                if seen[0] >= seq:
                    continue
            rows[key] = (seq, (dataset, partition_date(head.synctimestamp)), data)
        self.summary.cache_files += len(chunk.entries)
        exported = set() if self.dry_run else self.context.state.exported_among(rows)
        chunk.released = list(exported)
        exported.update(key for key in self._uncommitted if key in rows)
        self.summary.duplicates += len(exported)
        grouped: dict[tuple[str, str], _Planned] = {}
        for key, (_, where, data) in rows.items():
            if key in exported:
                continue
            planned = grouped.get(where)
            if planned is None:
                relative = f"{where[0]}/partition_date={where[1]}/part-{chunk.id}.parquet"
                planned = grouped[where] = _Planned(relative, self.dataset_named[where[0]], [], [])
            planned.files.append(data)
            planned.keys.append(key)
        return list(grouped.values())

    def _set_aside(self, path: str, entry: Entry, error: Exception) -> None:
        """Move a file that cannot become a row to ``{cache}/.set-aside/``, out of every
        later export's way (a reset keeps it)."""
        self.summary.unreadable += 1
        log.warning("set aside, not exportable: %s (%s)", entry.relpath, error)
        if self.dry_run:
            return
        target_dir = os.path.join(self.root, SET_ASIDE)
        check_no_links(self.root, target_dir)
        os.makedirs(target_dir, exist_ok=True)
        os.rename(path, os.path.join(target_dir, bounded_name(entry.relpath.replace("/", "~"))))

    def _restore(self, claim_dir: str, entries: Sequence[Entry]) -> None:
        """Return claimed files to the tree, unless the writer has written a newer one there."""
        for entry in entries:
            source = os.path.join(claim_dir, entry.relpath)
            target = os.path.join(self.root, entry.relpath)
            try:
                check_no_links(self.root, os.path.dirname(target))
            except SymlinkInCacheError as error:
                self._set_aside(source, entry, error)
                continue
            for _ in range(3):
                try:
                    os.link(source, target, follow_symlinks=False)  # fails if the name exists
                except FileExistsError:  # the writer's file is newer: it wins
                    break
                except FileNotFoundError:
                    if not os.path.lexists(source):
                        break
                    make_directories(self.root, os.path.dirname(target))
                    continue
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(source)

    def _done_batch(self) -> None:
        self.summary.batches += 1
        if self.progress is not None:
            self.progress(self.summary)

    # recovery -------------------------------------------------------------------------------

    def _recover(self) -> None:
        names = sorted(os.listdir(self.staging))
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):  # bookkeeping cut mid-write
                self._drop(name)
        for name in names:
            if name.endswith(".files") and not name.startswith("."):
                self._recover_chunk(name.removesuffix(".files"))
        if self._finishing:
            self._settle()  # committed chunks' files are gone before their claim is listed again
        for name in names:
            if name.endswith(".claim") and not name.startswith("."):
                claim_id = name.removesuffix(".claim")
                log.info("carrying on with export claim %s (interrupted)", claim_id)
                self.summary.recovered_claims += 1
                self._export_claim(claim_id)

    def _recover_chunk(self, chunk_id: str) -> None:
        lines = read_lines(self._path(f"{chunk_id}.files"))
        if not lines:
            self._drop(f"{chunk_id}.outputs", f"{chunk_id}.files")
            return
        claim_dir = self._path(lines[0])
        self.summary.recovered_claims += 1
        if self.context.state.claim_committed(chunk_id):
            log.info("finishing export chunk %s (committed before a crash)", chunk_id)
            chunk = [Entry(relpath, self._key_of(relpath)) for relpath in lines[1:]]
            self._finish_chunk(chunk_id, claim_dir, chunk)
        else:
            log.info("redoing export chunk %s (interrupted before its commit)", chunk_id)
            self.parts.remove(read_lines(self._path(f"{chunk_id}.outputs")))
            self._drop(f"{chunk_id}.outputs", f"{chunk_id}.files")

    def _key_of(self, relpath: str) -> str:
        directory = os.path.dirname(relpath)
        return self.by_dir.get(directory) or self.by_dir[os.path.dirname(directory)]

    # paths ----------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.staging, name)

    def _drop(self, *names: str) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(name))


def _purge_first(
    context: BatchExportContext, *, purge_deleted: bool, writer_timeout: float
) -> list[PurgeSummary]:
    """Finish an interrupted purge; purge the accounts seen deleted. A purge that cannot finish
    now (a writer that does not answer) raises ``PurgeError``: nothing is exported until it has,
    since the cache may hold rows of its accounts (the next export tries again)."""
    state = context.state
    pending = state.pending_purges() if purge_deleted else {}
    if not pending and not state.purges(unfinished=True):
        return []
    from syncstream.export.storage import ParquetStorage, storage_for  # noqa: PLC0415 (pyarrow: to purge only)

    output = context.output
    storage = storage_for(output, context.storage_options) if isinstance(output, str) else output
    by_reason: dict[str, list[str]] = {}
    for did, (_, reason) in sorted(pending.items()):
        by_reason.setdefault(reason, []).append(did)
    target = storage if isinstance(storage, ParquetStorage) else None
    try:
        done = purge_accounts(
            context.cache_root, state, target, context.handlers, locked=True, writer_timeout=writer_timeout
        )
        for reason, dids in sorted(by_reason.items()):
            done += purge_accounts(
                context.cache_root,
                state,
                target,
                context.handlers,
                dids,
                reason=reason,
                locked=True,
                writer_timeout=writer_timeout,
            )
        return done
    except PurgeError as error:
        raise PurgeError(f"{error}; nothing was exported, so that no row of its accounts is") from None


def export_batch(
    context: BatchExportContext,
    *,
    remove: bool = True,
    dry_run: bool = False,
    progress: Callable[[ExportSummary], None] | None = None,
    purge_deleted: bool = True,
    writer_timeout: float = 60.0,
) -> ExportSummary:
    """Export everything in the cache now; return what was written per dataset.

    First, an interrupted purge is finished and, with ``purge_deleted``, the accounts the writer
    saw deleted are purged (``syncstream.purge``). Raises ``CacheLockedError`` if another export
    is running on this cache, and ``PurgeError`` (having exported nothing) when such a purge
    cannot finish: a running writer did not apply the new population within ``writer_timeout``.
    """
    lock_path = os.path.join(context.cache_root, EXPORT_LOCK)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise CacheLockedError(f"another export is running on {context.cache_root}") from None
            raise
        purges = (
            []
            if dry_run
            else _purge_first(context, purge_deleted=purge_deleted, writer_timeout=writer_timeout)
        )
        summary = _Exporter(context, remove=remove, dry_run=dry_run, progress=progress).run()
        summary.purges = purges
        return summary
    finally:
        os.close(fd)
