"""The export protocol: claim, write, commit, remove. Exactly once, whatever is killed when.

1. **Claim.** The claim's id is written to ``{cache}/.export/{claim}.claim``; then each handler
   directory is renamed, whole, to ``{cache}/.export/{claim}/{handler dir}``: a few renames,
   however many files. The writer recreates a directory on its next write, so what it writes
   from then on is left for the next export, and what was claimed no longer changes.
2. **Write.** The claimed files are read in chunks of ``batch_files`` (bounded memory). For each
   chunk ``{chunk}.files`` lists them; rows are built, deduplicated within the chunk and against
   the keys already exported (kept for the relay's replay window); the Parquet names, derived
   from the chunk id, are recorded in ``{chunk}.outputs`` and then written.
3. **Commit.** One SQLite transaction records the chunk's keys and marks the chunk committed.
4. **Remove.** The chunk's files go (or, with ``remove=False``, go back into the tree), then its
   bookkeeping; once every chunk is done, the claim's directory and ``.claim`` file.

A crash before 3 leaves an uncommitted chunk: the next export deletes its recorded outputs, and
its files, still in the claim, are exported again. A crash after 3 leaves a committed chunk: the
next export finishes step 4. A clean failure (an exception) puts the claim back into the tree.
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
from collections.abc import Callable, Sequence
from typing import NamedTuple

import msgspec

from syncstream.cache import read_bytes, remove_files
from syncstream.context import BatchExportContext
from syncstream.errors import CacheLockedError
from syncstream.export.datasets import DATASET_OF, decode_head, partition_date
from syncstream.export.listing import Entry, chunks, list_tree, new_id, read_lines, write_text_atomic
from syncstream.export.parts import Part
from syncstream.state import ExportKey
from syncstream.types import HandlerKey

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
    unreadable: int = 0  # cache files that were not a record (moved to .export/unreadable/)
    recovered_claims: int = 0  # claims or chunks left by an earlier export that this one finished
    batches: int = 0
    dry_run: bool = False

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.datasets.values())


class _Planned(NamedTuple):
    relative_path: str  # under the storage's base, named after the chunk
    dataset: str
    files: list[bytes]  # the part's cache files ...
    keys: list[ExportKey]  # ... and their keys, row by row


class _Chunk:
    """One chunk of a claim on its way through write, commit and remove."""

    def __init__(self, chunk_id: str, claim_dir: str, entries: Sequence[Entry]) -> None:
        self.id, self.claim_dir, self.entries = chunk_id, claim_dir, entries
        self.planned: list[_Planned] = []
        self.committed = False


_DATASET_NAME = {key: dataset.name for key, dataset in DATASET_OF.items()}


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
        self.by_dir = {config.key.value: config.key for config in self.handlers}
        self.summary = ExportSummary(datasets={}, dry_run=dry_run)
        self._uncommitted: set[ExportKey] = set()  # keys of parts written, not yet committed
        self._finishing: list[str] = []  # committed chunks whose removal was handed on

    # the protocol ---------------------------------------------------------------------------

    def run(self) -> ExportSummary:
        os.makedirs(self.staging, exist_ok=True)
        if self.dry_run:
            for entries in chunks(self.root, self.handlers, self.context.batch_files):
                for planned in self._plan(_Chunk("dry-run", self.root, entries)):
                    stats = self.summary.datasets.setdefault(planned.dataset, DatasetSummary())
                    stats.rows += len(planned.keys)
                self._done_batch()
            return self.summary
        self._recover()
        if self._finishing:
            self._settle()
        window = self.context.dedup_window_hours * 3600
        self.context.state.prune_exported(time.time() - window, slack=window / 10)
        claim_id = new_id()
        if self._claim(claim_id):
            self._export_claim(claim_id)
        return self.summary

    def _claim(self, claim_id: str) -> bool:
        """Move every non-empty handler directory into the claim; False when there was none."""
        present = [
            config.key.value
            for config in self.handlers
            if next(config.read_strategy(os.path.join(self.root, config.key.value)), None) is not None
        ]
        if not present:
            return False
        write_text_atomic(self._path(f"{claim_id}.claim"), "".join(f"{d}\n" for d in present))
        claim_dir = self._path(claim_id)
        for directory in present:
            target = os.path.join(claim_dir, directory)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile (a reset)
                os.rename(os.path.join(self.root, directory), target)
        return True

    def _export_claim(self, claim_id: str) -> None:
        """Chunk by chunk, two in flight: chunk N+1 is read and its parts submitted before
        chunk N is committed and removed, so that a helper writes Parquet meanwhile."""
        claim_dir = self._path(claim_id)
        in_flight: deque[_Chunk] = deque()
        try:
            for entries in chunks(claim_dir, self.handlers, self.context.batch_files):
                chunk = _Chunk(new_id(), claim_dir, entries)
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
            # A clean failure: put the claim back so the cache is as it was. (A kill or a signal
            # skips this; the next export then carries on with the claim from its files.)
            for chunk in in_flight:
                self._abandon(chunk)
            with contextlib.suppress(Exception):
                self._settle()  # no removal may still run while the claim is put back
            self._restore(claim_dir, list(list_tree(claim_dir, self.handlers)))
            self._drop(f"{claim_id}.claim")
            shutil.rmtree(claim_dir, ignore_errors=True)
            raise
        shutil.rmtree(claim_dir, ignore_errors=True)
        self._drop(f"{claim_id}.claim")

    def _start(self, chunk: _Chunk) -> None:
        """List the chunk, plan its parts, record their names, submit them."""
        write_text_atomic(
            self._path(f"{chunk.id}.files"),
            os.path.basename(chunk.claim_dir) + "\n" + "".join(f"{e.relpath}\n" for e in chunk.entries),
        )
        chunk.planned = self._plan(chunk)
        write_text_atomic(
            self._path(f"{chunk.id}.outputs"), "".join(f"{p.relative_path}\n" for p in chunk.planned)
        )
        if chunk.planned:
            keys = [key for planned in chunk.planned for key in planned.keys]
            self.parts.submit(
                chunk.id, [Part(p.relative_path, p.dataset, p.files) for p in chunk.planned], keys
            )
            for planned in chunk.planned:
                self._uncommitted.update(planned.keys)
                planned.files.clear()  # submitted: the part writer has them (memory is bounded)

    def _complete(self, chunk: _Chunk) -> None:
        """Wait for the chunk's parts and its commit, then remove its files. (A chunk without
        rows commits here: its files still go only once that is recorded.)"""
        if chunk.planned:
            sizes = self.parts.sizes()
        else:
            sizes = []
            self.context.state.commit_export(chunk.id, [], time.time())
        chunk.committed = True
        self._uncommitted.difference_update(key for planned in chunk.planned for key in planned.keys)
        for planned, size in zip(chunk.planned, sizes, strict=True):
            stats = self.summary.datasets.setdefault(planned.dataset, DatasetSummary())
            stats.rows += len(planned.keys)
            stats.files += 1
            stats.bytes += size
        self._finish_chunk(chunk.id, chunk.claim_dir, chunk.entries)
        self._done_batch()

    def _abandon(self, chunk: _Chunk) -> None:
        """After a failure: remove an uncommitted chunk's parts and its bookkeeping. If even
        that fails, the bookkeeping stays and the next export's recovery does it."""
        if chunk.committed or self.context.state.claim_committed(chunk.id):
            return  # its files were put back with the claim; its keys drop their rows next time
        self._uncommitted.difference_update(key for p in chunk.planned for key in p.keys)
        try:
            self.parts.remove(read_lines(self._path(f"{chunk.id}.outputs")))
        except Exception as error:
            log.warning("export chunk %s: parts left for the next export to remove (%s)", chunk.id, error)
            return
        self._drop(f"{chunk.id}.outputs", f"{chunk.id}.files")

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
        """Read the chunk's files into one part per (dataset, partition date), deduplicated:
        within the chunk the latest seq wins; keys already exported, or in a part written and
        not yet committed, are dropped."""
        rows: dict[ExportKey, tuple[int, tuple[str, str], bytes]] = {}  # key -> (seq, where, file)
        prefix = chunk.claim_dir + "/"
        read, decode, names = read_bytes, decode_head, _DATASET_NAME
        missing = 0
        for entry in chunk.entries:
            path = prefix + entry.relpath
            try:
                data = read(path)
            except FileNotFoundError:
                missing += 1
                continue
            try:
                head = decode(data)
            except msgspec.DecodeError as error:
                self._set_aside(path, entry, error)
                continue
            dataset = names[entry.key]
            key = (dataset, head.uri, head.operation, head.follow_status or "")
            seen = rows.get(key)
            if seen is not None:
                self.summary.duplicates += 1
                if seen[0] >= head.seq:
                    continue
            rows[key] = (head.seq, (dataset, partition_date(head.synctimestamp)), data)
        self.summary.cache_files += len(chunk.entries) - missing
        exported = set() if self.dry_run else self.context.state.exported_among(rows)
        exported.update(key for key in self._uncommitted if key in rows)
        self.summary.duplicates += len(exported)
        grouped: dict[tuple[str, str], _Planned] = {}
        for key, (_, where, data) in rows.items():
            if key in exported:
                continue
            planned = grouped.get(where)
            if planned is None:
                relative = f"{where[0]}/partition_date={where[1]}/part-{chunk.id}.parquet"
                planned = grouped[where] = _Planned(relative, where[0], [], [])
            planned.files.append(data)
            planned.keys.append(key)
        return list(grouped.values())

    def _set_aside(self, path: str, entry: Entry, error: Exception) -> None:
        self.summary.unreadable += 1
        log.warning("not a cache record, set aside: %s (%s)", entry.relpath, error)
        if self.dry_run:
            return
        target_dir = self._path("unreadable")
        os.makedirs(target_dir, exist_ok=True)
        os.rename(path, os.path.join(target_dir, entry.relpath.replace("/", "~")))

    def _restore(self, claim_dir: str, entries: Sequence[Entry]) -> None:
        """Return claimed files to the tree, unless the writer has written a newer one there."""
        for entry in entries:
            source = os.path.join(claim_dir, entry.relpath)
            target = os.path.join(self.root, entry.relpath)
            for _ in range(3):
                try:
                    os.link(source, target)  # fails if the name exists: the writer's file wins
                except FileExistsError:
                    break
                except FileNotFoundError:
                    if not os.path.exists(source):
                        break
                    os.makedirs(os.path.dirname(target), exist_ok=True)
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

    def _key_of(self, relpath: str) -> HandlerKey:
        directory = os.path.dirname(relpath)
        return self.by_dir.get(directory) or self.by_dir[os.path.dirname(directory)]

    # paths ----------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.staging, name)

    def _drop(self, *names: str) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(name))


def export_batch(
    context: BatchExportContext,
    *,
    remove: bool = True,
    dry_run: bool = False,
    progress: Callable[[ExportSummary], None] | None = None,
) -> ExportSummary:
    """Export everything in the cache now; return what was written per dataset.

    Raises ``CacheLockedError`` if another export is running on this cache.
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
        return _Exporter(context, remove=remove, dry_run=dry_run, progress=progress).run()
    finally:
        os.close(fd)
