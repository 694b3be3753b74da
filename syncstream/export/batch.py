"""The export protocol: claim, write, commit, remove. Exactly once, whatever is killed when.

1. **Claim.** A batch of visible cache files is listed; its manifest (their relative paths) is
   written atomically to ``{cache}/.export/{claim}.manifest``; then each file is renamed to
   ``{cache}/.export/{claim}/{i}``. From here the writer can rewrite the same name without
   touching what was claimed, and a reader of the tree no longer sees it.
2. **Write.** Rows are built, deduplicated within the batch and against the keys already
   exported (kept for the relay's replay window); the Parquet names, derived from the claim id,
   are recorded in ``{claim}.outputs`` and then written.
3. **Commit.** One SQLite transaction records the exported keys and marks the claim committed.
4. **Remove.** The claimed files go (or, with ``remove=False``, go back where they were), then
   the claim's bookkeeping.

A crash before 3 leaves an uncommitted claim: the next export deletes its recorded outputs and
redoes it from its files. A crash after 3 leaves a committed claim: the next export finishes
step 4. A clean failure (an exception) rolls the claim back into the cache tree.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import msgspec
import pyarrow as pa

from syncstream.context import BatchExportContext
from syncstream.errors import CacheLockedError
from syncstream.export.tables import DATASET_OF, Dataset, TableBuilder, decode_head, partition_date
from syncstream.handlers import HandlerConfig
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
    recovered_claims: int = 0  # claims left by an earlier export that this one finished
    batches: int = 0
    dry_run: bool = False

    @property
    def rows(self) -> int:
        return sum(d.rows for d in self.datasets.values())


class _Entry(NamedTuple):
    relpath: str
    key: HandlerKey


class _Output(NamedTuple):
    relative_path: str  # under the storage's base, named after the claim
    dataset: Dataset
    table: pa.Table
    keys: list[ExportKey]


def _list_cache(context: BatchExportContext) -> Iterator[_Entry]:
    """Every visible cache file, handler by handler, through each handler's read strategy."""
    root = context.cache_root
    for key, config in context.handlers.items():
        for path in config.read_strategy(os.path.join(root, key.value)):
            yield _Entry(os.path.relpath(path, root), key)


def _chunks(entries: Iterator[_Entry], size: int) -> Iterator[list[_Entry]]:
    chunk: list[_Entry] = []
    for entry in entries:
        chunk.append(entry)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _key_of(relpath: str, handlers: dict[str, HandlerConfig]) -> HandlerKey:
    directory = os.path.dirname(relpath)
    if directory in handlers:
        return handlers[directory].key
    return handlers[os.path.dirname(directory)].key  # a nested file


def _write_text_atomic(path: str, text: str) -> None:
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, path)


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


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
        self.root = context.cache_root
        self.staging = os.path.join(self.root, STAGING)
        self.remove = remove
        self.dry_run = dry_run
        self.progress = progress
        self.handlers = {key.value: config for key, config in context.handlers.items()}
        self.summary = ExportSummary(datasets={}, dry_run=dry_run)

    # the protocol ---------------------------------------------------------------------------

    def run(self, batch_files: int) -> ExportSummary:
        os.makedirs(self.staging, exist_ok=True)
        if not self.dry_run:
            self._recover()
            cutoff = time.time() - self.context.dedup_window_hours * 3600
            self.context.state.prune_exported(cutoff)
        for chunk in _chunks(_list_cache(self.context), batch_files):
            if self.dry_run:
                self._build("dry-run", chunk, [os.path.join(self.root, e.relpath) for e in chunk])
            else:
                self._export_claim(self._claim(chunk), chunk)
            self.summary.batches += 1
            if self.progress is not None:
                self.progress(self.summary)
        return self.summary

    def _claim(self, chunk: Sequence[_Entry]) -> str:
        claim_id = f"{time.time_ns():020d}"
        _write_text_atomic(self._manifest(claim_id), "".join(f"{e.relpath}\n" for e in chunk))
        claim_dir = os.path.join(self.staging, claim_id)
        os.mkdir(claim_dir)
        self._move_in(claim_id, chunk)
        return claim_id

    def _move_in(self, claim_id: str, chunk: Sequence[_Entry]) -> None:
        claim_dir = os.path.join(self.staging, claim_id)
        for i, entry in enumerate(chunk):
            target = os.path.join(claim_dir, str(i))
            try:
                os.rename(os.path.join(self.root, entry.relpath), target)
            except FileNotFoundError:
                # Already claimed before a crash, or removed by a reset: nothing to move.
                continue

    def _export_claim(self, claim_id: str, chunk: Sequence[_Entry]) -> None:
        claim_dir = os.path.join(self.staging, claim_id)
        paths = [os.path.join(claim_dir, str(i)) for i in range(len(chunk))]
        try:
            outputs = self._build(claim_id, chunk, paths)
            listing = "".join(f"{o.relative_path}\n" for o in outputs)
            _write_text_atomic(self._outputs(claim_id), listing)
            sizes = [self.context.storage.write(o.relative_path, o.table) for o in outputs]
            keys = [key for o in outputs for key in o.keys]
            self.context.state.commit_export(claim_id, keys, time.time())
        except Exception:
            # A clean failure: put the claim back so the cache is as it was. (A kill or a
            # signal skips this; the next export then redoes the claim from its files.)
            self._roll_back(claim_id, chunk)
            raise
        for output, size in zip(outputs, sizes, strict=True):
            stats = self.summary.datasets.setdefault(output.dataset.name, DatasetSummary())
            stats.rows += output.table.num_rows
            stats.files += 1
            stats.bytes += size
        self._finish(claim_id, chunk)

    def _build(self, claim_id: str, chunk: Sequence[_Entry], paths: Sequence[str]) -> list[_Output]:
        """Read the claimed files into one Table per (dataset, partition date), deduplicated."""
        builders: dict[tuple[str, str], TableBuilder] = {}
        latest: dict[ExportKey, tuple[int, tuple[str, str], int]] = {}  # key -> (seq, where, row)
        for entry, path in zip(chunk, paths, strict=True):
            try:
                data = _read(path)
            except FileNotFoundError:
                continue
            self.summary.cache_files += 1
            try:
                head = decode_head(data)
            except msgspec.DecodeError as error:
                self._quarantine(path, entry, error)
                continue
            dataset = DATASET_OF[entry.key]
            where = (dataset.name, partition_date(head.synctimestamp))
            builder = builders.get(where)
            if builder is None:
                builder = builders[where] = TableBuilder(dataset)
            key = (dataset.name, head.uri, head.operation, head.follow_status or "")
            seen = latest.get(key)
            if seen is not None:
                self.summary.duplicates += 1
                if seen[0] >= head.seq:
                    continue
            builder.add(head)
            latest[key] = (head.seq, where, len(builder) - 1)
        exported = set() if self.dry_run else self.context.state.exported_among(latest)
        self.summary.duplicates += len(exported)
        keep: dict[tuple[str, str], list[tuple[int, ExportKey]]] = {}
        for key, (_, where, row) in latest.items():
            if key not in exported:
                keep.setdefault(where, []).append((row, key))
        outputs: list[_Output] = []
        for where, builder in builders.items():
            rows = sorted(keep.get(where, []))
            if not rows:
                continue
            table = builder.table(row for row, _ in rows)
            if self.dry_run:
                stats = self.summary.datasets.setdefault(builder.dataset.name, DatasetSummary())
                stats.rows += table.num_rows
                continue
            relative = f"{where[0]}/partition_date={where[1]}/part-{claim_id}.parquet"
            outputs.append(_Output(relative, builder.dataset, table, [key for _, key in rows]))
        return outputs

    def _quarantine(self, path: str, entry: _Entry, error: Exception) -> None:
        self.summary.unreadable += 1
        log.warning("not a cache record, set aside: %s (%s)", entry.relpath, error)
        if self.dry_run:
            return
        target_dir = os.path.join(self.staging, "unreadable")
        os.makedirs(target_dir, exist_ok=True)
        os.rename(path, os.path.join(target_dir, entry.relpath.replace("/", "~")))

    def _finish(self, claim_id: str, chunk: Sequence[_Entry]) -> None:
        claim_dir = os.path.join(self.staging, claim_id)
        if self.remove:
            shutil.rmtree(claim_dir, ignore_errors=True)
        else:
            self._move_back(claim_id, chunk)
        self._drop_bookkeeping(claim_id)
        self.context.state.forget_claim(claim_id)

    def _drop_bookkeeping(self, claim_id: str) -> None:
        for path in (self._outputs(claim_id), self._manifest(claim_id)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _move_back(self, claim_id: str, chunk: Sequence[_Entry]) -> None:
        """Return claimed files to the tree, unless the writer has written a newer one there."""
        claim_dir = os.path.join(self.staging, claim_id)
        for i, entry in enumerate(chunk):
            source = os.path.join(claim_dir, str(i))
            target = os.path.join(self.root, entry.relpath)
            try:
                os.link(source, target)  # fails if the name exists: the writer's file wins
            except FileExistsError:
                pass
            except FileNotFoundError:
                if not os.path.exists(source):
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.link(source, target)
        shutil.rmtree(claim_dir, ignore_errors=True)

    def _roll_back(self, claim_id: str, chunk: Sequence[_Entry]) -> None:
        try:
            outputs = self._read_lines(self._outputs(claim_id))
            self.context.storage.remove(outputs)
        except Exception:  # the storage is what failed: leave the claim for the next export
            log.exception("could not remove the partial outputs of claim %s", claim_id)
            return
        self._move_back(claim_id, chunk)
        self._drop_bookkeeping(claim_id)

    # recovery -------------------------------------------------------------------------------

    def _recover(self) -> None:
        manifests = sorted(
            name[: -len(".manifest")]
            for name in os.listdir(self.staging)
            if name.endswith(".manifest") and not name.startswith(".")
        )
        for claim_id in manifests:
            chunk = [
                _Entry(relpath, _key_of(relpath, self.handlers))
                for relpath in self._read_lines(self._manifest(claim_id))
            ]
            self.summary.recovered_claims += 1
            if self.context.state.claim_committed(claim_id):
                log.info("finishing export claim %s (committed before a crash)", claim_id)
                self._finish(claim_id, chunk)
                continue
            log.info("redoing export claim %s (interrupted before its commit)", claim_id)
            self.context.storage.remove(self._read_lines(self._outputs(claim_id)))
            os.makedirs(os.path.join(self.staging, claim_id), exist_ok=True)
            self._move_in(claim_id, chunk)
            self._export_claim(claim_id, chunk)

    # paths ----------------------------------------------------------------------------------

    def _manifest(self, claim_id: str) -> str:
        return os.path.join(self.staging, f"{claim_id}.manifest")

    def _outputs(self, claim_id: str) -> str:
        return os.path.join(self.staging, f"{claim_id}.outputs")

    @staticmethod
    def _read_lines(path: str) -> list[str]:
        try:
            with open(path, encoding="utf-8") as handle:
                return [line for line in handle.read().split("\n") if line]
        except FileNotFoundError:
            return []


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
        exporter = _Exporter(context, remove=remove, dry_run=dry_run, progress=progress)
        return exporter.run(context.batch_files)
    finally:
        os.close(fd)
