"""The cache side of an export: which handler directories can be read, their files read in
chunks, each chunk planned into parts (deduplicated), and files set aside or put back."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from syncstream.cache import SET_ASIDE, check_no_links, make_directories, read_bytes
from syncstream.errors import SymlinkInCacheError
from syncstream.export.context import BatchExportContext
from syncstream.export.plan import Chunk, Planned, unexportable
from syncstream.listing import Entry, list_tree
from syncstream.registry.datasets import Dataset, partition_date
from syncstream.registry.handlers import HandlerConfig
from syncstream.registry.paths import bounded_name
from syncstream.registry.views import decode_head
from syncstream.store import ExportKey, export_key

if TYPE_CHECKING:
    from syncstream.export.summary import ExportSummary

__all__ = ["CacheSide"]

log = logging.getLogger("syncstream.export")


class CacheSide:
    """Reading and planning, for the exporter (``syncstream.export.batch``) that sets these."""

    context: BatchExportContext
    root: str
    dry_run: bool
    handlers: list[HandlerConfig]
    dataset_of: Mapping[str, Dataset]
    dataset_named: Mapping[str, Dataset]
    summary: ExportSummary
    _uncommitted: set[ExportKey]

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

    def _plan(self, chunk: Chunk) -> list[Planned]:
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
            problem = unexportable(head)
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
        exported = set() if self.dry_run else self.context.state.exports.exported_among(rows)
        chunk.released = list(exported)
        exported.update(key for key in rows if key in self._uncommitted)  # (the chunk, not the run)
        self.summary.duplicates += len(exported)
        grouped: dict[tuple[str, str], Planned] = {}
        for key, (_, where, data) in rows.items():
            if key in exported:
                continue
            planned = grouped.get(where)
            if planned is None:
                relative = f"{where[0]}/partition_date={where[1]}/part-{chunk.id}.parquet"
                planned = grouped[where] = Planned(relative, self.dataset_named[where[0]], [], [])
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
