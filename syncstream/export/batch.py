"""The export protocol: claim, write, commit, remove. Exactly once, whatever is killed when.

A run exports one claim (``syncstream.staging`` lays out and names its bookkeeping):

1. **Claim.** The claim's directories are recorded, then each handler directory is renamed,
   whole, into ``{cache}/.export/{claim}/``: a few renames, however many files. The writer
   recreates a directory on its next write, so what it writes from then on is left for the next
   export, and what was claimed no longer changes.
2. **Write.** The claimed files are read in chunks of at most ``batch_files`` files and about
   ``batch_bytes`` bytes (bounded memory). For each chunk its files are listed; rows are built,
   deduplicated within the run and against the keys already exported (kept for the relay's
   replay window); its data files, named after the chunk, are recorded and then written (by the
   part writer: a helper process, or inline) into their tables' directories, where no reader
   looks until a commit names them.
3. **Commit.** Once every data file of the run is written, this process, and only this one,
   records the run (``{claim}.commit``: each table's files, the application transaction
   ``(store id, version)``, the keys) and commits each table once: one commit per table per run,
   carrying the transaction (``syncstream.lake.delta``). Then one SQLite transaction records the keys
   and the run's chunks.
4. **Remove.** The claim's files go (or, with ``remove=False``, go back into the tree), then the
   bookkeeping.

A crash before the run is recorded leaves data files no log names: the next export removes them
and exports the claim again. A crash after it leaves a recorded run: the next export commits
the tables that do not hold its transaction yet (each table's log says which do: never twice),
records the keys and finishes step 4. A clean failure before step 3 removes what it wrote and
puts the claim back into the tree. Each step has a named failpoint (``syncstream.staging.Step``).

With ``--format parquet`` the same protocol writes plain Hive-partitioned files and step 3 has
no table to commit: the SQLite transaction is the commit.

A cache file that cannot become a row (not a cache record, a time or seq out of range) is set
aside in ``{cache}/.set-aside/`` and counted; symbolic links inside the cache are never followed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence

from syncstream.cache import (
    check_no_links,
    remove_files,
)
from syncstream.errors import ConfigError
from syncstream.export.context import BatchExportContext
from syncstream.export.parts import HelperParts, Part
from syncstream.export.plan import Chunk
from syncstream.export.purges import purge_first
from syncstream.export.summary import DatasetSummary, ExportSummary, RecoveredRun
from syncstream.export.tree import CacheSide
from syncstream.failpoints import failpoint
from syncstream.lake.lock import LakeLock
from syncstream.listing import Entry, list_tree, new_id
from syncstream.options import WRITER_TIMEOUT
from syncstream.registry.handlers import datasets_of
from syncstream.staging import AddedFile, ExportLock, RunCommit, Staging, Step
from syncstream.store import ExportKey

__all__ = ["export_batch"]

log = logging.getLogger("syncstream.export")


class _Exporter(CacheSide):
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
        self.staging = Staging(self.root)
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

    def dry(self) -> ExportSummary:
        for entries, data in self._read_chunks(self.root, self._listable(self.root)):
            for planned in self._plan(Chunk("dry-run", self.root, entries, data)):
                stats = self.summary.datasets.setdefault(planned.dataset.name, DatasetSummary())
                stats.rows += len(planned.keys)
            self._done_batch()
        return self.summary

    def prepare(self) -> None:
        check_no_links(self.root, self.staging.directory)
        os.makedirs(self.staging.directory, exist_ok=True)
        self._recover_runs()
        if self.context.format == "delta":
            self._take_over()
        elif isinstance(self.context.output, str):
            self._refuse_tables()

    def _take_over(self) -> None:
        """Refuse a table whose column has another type; convert a plain-Parquet dataset left
        by an earlier release into its table, in place (its files become the table's)."""
        from syncstream.lake.delta import check_datasets, convert_plain, is_table, location  # noqa: PLC0415

        for name in self.dataset_named:
            where = location(self._out(), name)
            if not is_table(where) and convert_plain(where):
                log.info("%s: plain Parquet converted in place to a Delta table", name)
        check_datasets(self._out(), self.dataset_named.values())

    def _refuse_tables(self) -> None:
        """Plain files added beside a Delta table's would be lost to its readers (the log does
        not list them) and doubled for a glob: refused before anything is claimed."""
        from syncstream.lake.delta import is_table, location  # noqa: PLC0415

        tables = [name for name in self.dataset_named if is_table(location(self._out(), name))]
        if tables:
            raise ConfigError(
                f"{self._out()} holds Delta tables ({', '.join(tables)}): a plain-Parquet export "
                "would write files they do not list; export with --format delta (the default)"
            )

    def run(self) -> ExportSummary:
        self._recover_claims()
        window = self.context.dedup_window_hours * 3600
        self.context.state.exports.prune(time.time() - window, slack=window / 10)
        claim_id = new_id()
        if self._claim(claim_id):
            self._export_claim(claim_id)
        return self.summary

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
        self.staging.record_claim(claim_id, present)
        failpoint(Step.CLAIM_MANIFEST)
        claim_dir = self.staging.path(claim_id)
        for directory in present:
            target = os.path.join(claim_dir, directory)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile (a reset)
                os.rename(os.path.join(self.root, directory), target)
            failpoint(Step.CLAIM_RENAME)
        return True

    def _export_claim(self, claim_id: str) -> None:
        """Chunk by chunk, two in flight: chunk N+1 is read and its parts submitted while the
        part writer writes chunk N. Once all are written, the run is committed, table by table,
        and only then are the claim's files removed."""
        claim_dir = self.staging.path(claim_id)
        in_flight: deque[Chunk] = deque()
        written: list[Chunk] = []
        recorded = False
        try:
            for entries, data in self._read_chunks(claim_dir, self._listable(claim_dir)):
                chunk = Chunk(new_id(), claim_dir, entries, data)
                in_flight.append(chunk)
                self._start(chunk)
                while len(in_flight) > 1:
                    written.append(self._written(in_flight.popleft()))
            while in_flight:
                written.append(self._written(in_flight.popleft()))
            if written:
                run = self._run_of(claim_id, written)
                self.staging.record_run(run)
                recorded = True
                failpoint(Step.RUN_RECORDED)
                self._commit_run(run)
                for chunk in written:
                    self._finish_chunk(chunk.id, chunk.claim_dir, chunk.entries)
            self._settle()
        except Exception:
            if not recorded:  # a recorded run is the next export's to commit: never put back
                self._fail_claim(claim_id, [*written, *in_flight])
            raise
        self.staging.drop_run(claim_id)
        shutil.rmtree(claim_dir, ignore_errors=True)
        failpoint(Step.CLAIM_REMOVED)
        self.staging.drop(f"{claim_id}.claim")

    def _start(self, chunk: Chunk) -> None:
        """List the chunk, plan its parts, record their names, submit them."""
        self.staging.record_chunk(
            chunk.id, os.path.basename(chunk.claim_dir), [e.relpath for e in chunk.entries]
        )
        failpoint(Step.CHUNK_LISTED)
        chunk.planned = self._plan(chunk)
        chunk.data = []  # planned: the parts hold what they need
        self.staging.record_outputs(chunk.id, [p.relative_path for p in chunk.planned])
        failpoint(Step.OUTPUTS_RECORDED)
        if chunk.planned:
            self.parts.submit([Part(p.relative_path, p.dataset, p.files) for p in chunk.planned])
            for planned in chunk.planned:
                self._uncommitted.update(planned.keys)
                planned.files.clear()  # submitted: the part writer has them (memory is bounded)

    def _written(self, chunk: Chunk) -> Chunk:
        """Wait until the chunk's parts are written; note their sizes."""
        chunk.sizes = self.parts.sizes() if chunk.planned else []
        for planned, size in zip(chunk.planned, chunk.sizes, strict=True):
            stats = self.summary.datasets.setdefault(planned.dataset.name, DatasetSummary())
            stats.rows += len(planned.keys)
            stats.files += 1
            stats.bytes += size
        self._done_batch()
        return chunk

    def _run_of(self, claim_id: str, chunks: Sequence[Chunk]) -> RunCommit:
        state = self.context.state
        tables: dict[str, list[AddedFile]] = {}
        for chunk in chunks:
            for planned, size in zip(chunk.planned, chunk.sizes, strict=True):
                name = planned.dataset.name
                path = planned.relative_path.removeprefix(f"{name}/")
                date = path.split("/", 1)[0].removeprefix("partition_date=")
                tables.setdefault(name, []).append(
                    AddedFile(path=path, partition_date=date, size=size, rows=len(planned.keys))
                )
        return RunCommit(
            claim=claim_id,
            app_id=state.exports.store_id(),
            version=state.exports.next_version(),
            format=self.context.format,
            chunks=[chunk.id for chunk in chunks],
            tables=tables,
            keys=[key for chunk in chunks for key in chunk.keys],
            pinned=not self.remove,
            released=[key for chunk in chunks for key in chunk.released] if self.remove else [],
            keep_deleted_content=self.context.keep_deleted_content,
        )

    def _commit_run(self, run: RunCommit) -> None:
        """Commit each table that does not hold the run yet, erase what its deletes delete
        (``syncstream.lake.erase``), then the keys: idempotent."""
        if run.format == "delta":
            from syncstream.export.erase import erase_run  # noqa: PLC0415
            from syncstream.lake.delta import commit_run  # noqa: PLC0415 (delta-rs: only to commit)

            self.summary.commits += commit_run(self._out(), run, self.dataset_named)
            inline = not isinstance(self.parts, HelperParts)  # pyarrow is this process's already
            self.summary.erased += erase_run(self._out(), run, self.dataset_named, inline=inline)
        state = self.context.state
        if not state.exports.claim_committed(run.claim):
            state.exports.commit(
                [run.claim, *run.chunks], run.keys, time.time(), pinned=run.pinned, released=run.released
            )
        failpoint(Step.COMMITTED)
        self._uncommitted.difference_update(run.keys)

    def _count(self, run: RunCommit) -> None:
        """A recovered run's rows, committed by this export: said apart from its own, as the
        cache files they came from were read (and counted) by the export that recorded it."""
        rows = {name: sum(f.rows for f in files) for name, files in run.tables.items()}
        self.summary.recovered_runs.append(RecoveredRun(claim=run.claim, rows=rows))

    def _out(self) -> str:
        output = self.context.output
        if not isinstance(output, str):
            raise TypeError("a Delta export needs its output as a directory or URI")
        return output

    def _fail_claim(self, claim_id: str, chunks: Sequence[Chunk]) -> None:
        """After a clean failure before the run was recorded: remove what it wrote (or leave it
        recorded for the next export) and put the claim back into the tree."""
        for chunk in chunks:
            self._uncommitted.difference_update(chunk.keys)
        if self.parts.healthy():
            with contextlib.suppress(Exception):
                self.parts.sync()
        for chunk_id in self.staging.chunks():
            claim, _ = self.staging.chunk_listing(chunk_id)
            if claim != claim_id:
                continue
            try:
                self.parts.remove(self.staging.outputs(chunk_id))
            except Exception as error:
                log.warning("export chunk %s: parts left for the next export to remove (%s)", chunk_id, error)
                continue
            self.staging.drop(f"{chunk_id}.outputs", f"{chunk_id}.files")
        claim_dir = self.staging.path(claim_id)
        self._restore(claim_dir, list(list_tree(claim_dir, self.handlers)))
        self.staging.drop(f"{claim_id}.claim")
        shutil.rmtree(claim_dir, ignore_errors=True)

    def _finish_chunk(self, chunk_id: str, claim_dir: str, chunk: Sequence[Entry]) -> None:
        """Remove a committed chunk's files, then its bookkeeping (handed to the part writer,
        whose helper does it beside this process)."""
        bookkeeping = self.staging.chunk_bookkeeping(chunk_id)
        if self.remove:
            self.parts.finish([f"{claim_dir}/{e.relpath}" for e in chunk], bookkeeping)
        else:
            self._restore(claim_dir, chunk)
            remove_files(bookkeeping)
        self._finishing.append(chunk_id)

    def _settle(self) -> None:
        """Wait for the handed-on removals; then the committed chunks are done with."""
        self.parts.sync()
        self.context.state.exports.forget_claims(self._finishing)
        self._finishing.clear()

    def _done_batch(self) -> None:
        self.summary.batches += 1
        if self.progress is not None:
            self.progress(self.summary)

    # recovery -------------------------------------------------------------------------------

    def _recover_runs(self) -> None:
        """Commit the runs recorded before a crash (the tables that do not hold them yet, then
        their keys); remove the data files of chunks no run will commit; finish removals."""
        self.staging.drop_temporaries()
        runs = self.staging.runs()
        for run in runs:
            log.info("committing export run %s (recorded before an interruption)", run.claim)
            self._commit_run(run)
            self._count(run)
        for chunk_id in self.staging.chunks():
            self._recover_chunk(chunk_id)
        if self._finishing:
            self._settle()  # committed chunks' files are gone before their claim is listed again
        for run in runs:
            self.staging.drop_run(run.claim)

    def _recover_claims(self) -> None:
        for claim_id in self.staging.claims():
            log.info("carrying on with export claim %s (interrupted)", claim_id)
            self.summary.recovered_claims += 1
            self._export_claim(claim_id)

    def _recover_chunk(self, chunk_id: str) -> None:
        claim, relpaths = self.staging.chunk_listing(chunk_id)
        if claim is None:
            self.staging.drop(f"{chunk_id}.outputs", f"{chunk_id}.files")
            return
        claim_dir = self.staging.path(claim)
        self.summary.recovered_claims += 1
        if self.context.state.exports.claim_committed(chunk_id):
            log.info("finishing export chunk %s (committed before a crash)", chunk_id)
            chunk = [Entry(relpath, self._key_of(relpath)) for relpath in relpaths]
            self._finish_chunk(chunk_id, claim_dir, chunk)
        else:
            log.info("redoing export chunk %s (interrupted before its commit)", chunk_id)
            self.parts.remove(self.staging.outputs(chunk_id))
            self.staging.drop(f"{chunk_id}.outputs", f"{chunk_id}.files")

    def _key_of(self, relpath: str) -> str:
        directory = os.path.dirname(relpath)
        return self.by_dir.get(directory) or self.by_dir[os.path.dirname(directory)]


def export_batch(
    context: BatchExportContext,
    *,
    remove: bool = True,
    dry_run: bool = False,
    progress: Callable[[ExportSummary], None] | None = None,
    purge_deleted: bool = True,
    writer_timeout: float = WRITER_TIMEOUT,
) -> ExportSummary:
    """Export everything in the cache now; return what was written per dataset.

    First, an interrupted export run is committed; then an interrupted purge is finished and,
    with ``purge_deleted``, the accounts the writer saw deleted are purged (``syncstream.purge``).
    Raises ``CacheLockedError`` if another export is running on this cache, and ``PurgeError``
    (having exported nothing) when such a purge cannot finish: a running writer did not apply
    the new population within ``writer_timeout``.
    """
    with ExportLock(context.cache_root, wait=False):
        exporter = _Exporter(context, remove=remove, dry_run=dry_run, progress=progress)
        if dry_run:
            return exporter.dry()
        output = context.output
        # the output's lock, through recovery, the purges and the run's commits: no purge or
        # compaction of any store commits to these tables meanwhile (``lake.lock``)
        lake = LakeLock(output, what="syncstream export") if isinstance(output, str) else None
        with lake or contextlib.nullcontext():
            exporter.prepare()
            if isinstance(output, str):  # known before anything new is written there
                if "://" not in output:  # there from now on: a purge finds it, or knows it gone
                    os.makedirs(output, exist_ok=True)
                state = context.state
                state.catalog.record_output(output, context.format, state.exports.store_id(), time.time())
            purges = purge_first(context, purge_deleted=purge_deleted, writer_timeout=writer_timeout)
            summary = exporter.run()
            summary.purges = purges
            if context.format == "delta" and isinstance(output, str):
                from syncstream.lake.study_record import write_study_record  # noqa: PLC0415 (delta-rs)

                summary.commits += write_study_record(output, context.state)
            return summary
