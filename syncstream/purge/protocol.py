"""The purge protocol: an account leaves the study, and everything collected of it or because of
it leaves the cache, the state and the output. Exactly once, whatever is killed when.

1. **Begin.** One transaction: the accounts leave the population for good (remembered as
   purged), and the purge is recorded as running. A running writer applies the new population
   at its next flush and says so in the state; the purge waits for that, so that nothing the
   writer writes from then on involves the accounts.
2. **Settle the export.** An export run recorded before a crash is committed to its tables
   (``syncstream.lake.delta``), so that the tables hold every row there is; data files no run will
   commit are removed.
3. **Find.** Every cache file (in the tree and in export claims), every file set aside and
   every output row that could involve them is read: rows authored by the accounts, and create
   or update rows their handler kept because of them, are involved; so are the deletes of the
   same (dataset, URI, follow status). What was found is kept (``syncstream.staging``) until the
   purge is done.
4. **Cache.** The involved cache and set-aside files are removed.
5. **Output.** In each Delta table the rows are deleted in one commit and the files it replaced
   vacuumed (``purge.tables``); in a plain-Parquet output each file is rewritten without them
   (``purge.parquet``). The study-record tables are rewritten from the state, which step 1
   took the accounts' membership spells out of (``lake.study_record``).
6. **Copies.** Steps 2-5 go through every output the store's catalog records
   (``purge.outputs``); then every recorded snapshot is rewritten and its manifest re-issued,
   record files filtered, backfill scratch removed (``purge.copies``), and the export's
   bookkeeping and directories that name the accounts removed (``purge.bookkeeping``). An
   output that cannot be reached leaves the purge unfinished.
7. **Finish.** The index forgets the involved URIs; the purge is recorded done, with its counts;
   the state's WAL is checkpointed and truncated, so no deleted row's bytes stay in it.

A purge killed at any step is finished by the next purge or export (same id, same accounts).
It holds the export lock throughout (purges and exports of a cache take turns), and the
output's lock (``syncstream.lake.lock``: no other command commits to its tables meanwhile).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from syncstream.cache import WriterLock, remove_files
from syncstream.errors import PurgeError
from syncstream.failpoints import failpoint
from syncstream.lake.lock import LakeLock
from syncstream.listing import new_id
from syncstream.options import WRITER_TIMEOUT
from syncstream.purge import in_cache, parquet
from syncstream.purge.copies import purge_copies
from syncstream.purge.outputs import Output, reach, recorded_outputs
from syncstream.purge.rows import Involvement
from syncstream.purge.summary import PurgeSummary, writer_running
from syncstream.registry.handlers import HandlerConfig, Registry, datasets_of
from syncstream.staging import ExportLock, PurgePlan, Staging, Step
from syncstream.store import PurgeReason, PurgeRecord, StateStore

if TYPE_CHECKING:
    from syncstream.lake.storage import ParquetStorage

__all__ = ["PurgeSummary", "purge_accounts"]

log = logging.getLogger("syncstream.purge")


def purge_accounts(
    cache_root: str,
    state: StateStore,
    storage: ParquetStorage | None,
    handlers: Registry,
    dids: Iterable[str] = (),
    *,
    reason: PurgeReason = PurgeReason.WITHDRAWAL,
    locked: bool = False,
    writer_timeout: float = WRITER_TIMEOUT,
    out: str | None = None,
) -> list[PurgeSummary]:
    """Finish any interrupted purge, then purge ``dids`` (if any); a summary per purge run.

    Each purge goes through every output the catalog records (``purge.outputs``); ``out`` and
    ``storage`` (as files, with the caller's options) name one or are None: ``ConfigError``,
    nothing recorded, when it is not one. ``locked``: the caller holds the export lock already.
    ``PurgeError`` when a running writer does not apply the new population within
    ``writer_timeout`` seconds, or an output cannot be reached: the purge stays unfinished.
    """
    wanted = sorted(set(dids))
    with contextlib.nullcontext() if locked else ExportLock(cache_root, wait=True):
        outputs = recorded_outputs(state, out, storage)
        done = [
            _everywhere(cache_root, state, outputs, handlers, record, writer_timeout, recovered=True)
            for record in state.purges.records(unfinished=True)
        ]
        if wanted:
            record = PurgeRecord(new_id(), tuple(wanted), reason, time.time(), None, None, None)
            done.append(_everywhere(cache_root, state, outputs, handlers, record, writer_timeout))
    return done


def _everywhere(  # noqa: PLR0917 (two call sites, both above)
    root: str,
    state: StateStore,
    outputs: list[Output],
    handlers: Registry,
    record: PurgeRecord,
    writer_timeout: float,
    *,
    recovered: bool = False,
) -> PurgeSummary:
    """One purge through every output, then every other copy; done only if every output was
    reached."""
    state.purges.begin(record.purge_id, record.dids, record.reason, record.started_at)
    unreachable: list[str] = []
    purge: _Purge | None = None
    summary = PurgeSummary(purge_id=record.purge_id, dids=record.dids, reason=record.reason)
    for output in outputs:
        try:
            reached = reach(output)
        except PurgeError as error:
            log.warning("%s; the purge stays unfinished", error)
            unreachable.append(str(error))
            continue
        # the output's lock (``lake.lock``): no other command commits to its tables meanwhile
        lake = None if reached.out is None else LakeLock(reached.out, create=False, what="syncstream purge")
        with lake or contextlib.nullcontext():
            purge = _Purge(root, state, reached, handlers, record, writer_timeout)
            summary.add(purge.run(recovered=recovered))
        summary.outputs += reached.out is not None
    if purge is None:  # no output reached: the cache, the state and the other copies still go
        purge = _Purge(root, state, Output(None, None), handlers, record, writer_timeout)
        summary.add(purge.run(recovered=recovered))
    copies = purge_copies(state, root, dids=purge.involvement.dids, involved=purge.involved,
                          authors=purge.authors, purge_id=record.purge_id, reason=record.reason)  # fmt: skip
    summary.count(copies)
    if unreachable:
        raise PurgeError("; ".join(unreachable) + "; the purge is recorded unfinished, and the next "
                         "purge or export finishes it")  # fmt: skip
    purge.finish(summary)
    return summary


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
        output: Output,
        handlers: Registry,
        record: PurgeRecord,
        writer_timeout: float,
    ) -> None:
        self.root, self.state, self.output, self.handlers = root, state, output, handlers
        self.staging = Staging(root)
        self.record = record
        self.writer_timeout = writer_timeout
        self.involvement = Involvement.of(record.dids, handlers)
        self.datasets = datasets_of(handlers)
        # every dataset under the output and the column of the account its rows belong to: the
        # registry's, and those another store's registry wrote there (a shard's), whose rows
        # go by their author alone
        self.authors = {name: dataset.author_column for name, dataset in self.datasets.items()}
        self.authors["population/membership"] = "did"  # the study's record: rewritten, then checked
        # (dataset, URI, follow status) of rows kept because of them: a follow's two rows share
        # its URI, and a study user's own follow of a purged account (the follower row) stays
        self.involved: set[tuple[str, str, str]] = set()
        self.summary = PurgeSummary(purge_id=record.purge_id, dids=record.dids, reason=record.reason)

    def run(self, *, recovered: bool = False) -> PurgeSummary:
        record = self.record
        if recovered:
            log.info("finishing purge %s of %s (interrupted)", record.purge_id, ", ".join(record.dids))
        self.summary.recovered = recovered
        self.state.purges.begin(record.purge_id, record.dids, record.reason, record.started_at)
        failpoint(Step.PURGE_BEGUN)
        self._wait_for_writer(self.state.population.version())
        self._settle_export()
        cache_files = list(in_cache.cache_files(self.root, self.handlers, self.staging.claim_directories()))
        tables, parts = self._outputs()
        for _, config, cached in cache_files:
            row = _Row(cached.operation, cached.author_did, cached.uri, cached.record, config.follow_status)
            self._note(config.dataset.name, config, row)
        for name in tables:
            from syncstream.purge.tables import candidate_rows  # noqa: PLC0415 (delta-rs, pyarrow)

            known = self.datasets.get(name)  # a table of a registry this one is not: no link
            link = known.link_column if known is not None else None
            self._note_rows(
                name,
                candidate_rows(self._where(name), self.authors[name], self.involvement.dids, link),
            )
        for relative_path, name in parts:
            assert self.output.storage is not None
            rows = parquet.candidate_rows(
                self.output.storage, relative_path, self.authors[name], self.involvement.dids
            )
            self._note_rows(name, rows)
        plan = self.staging.purge_plan(record.purge_id)
        if plan is not None:  # found by an earlier pass of this purge, before a crash
            self.involved.update(plan.involved)
        self.staging.record_purge(PurgePlan(purge_id=record.purge_id, involved=sorted(self.involved)))
        doomed = [
            path
            for path, config, cached in cache_files
            if cached.author_did in self.involvement.dids
            or (config.dataset.name, cached.uri, config.follow_status or "") in self.involved
        ]
        doomed += in_cache.set_aside_files(self.root, self.handlers, self.involvement, self.involved)
        self.summary.cache_files = remove_files(doomed)
        failpoint(Step.PURGE_CACHE_REMOVED)
        for name in tables:
            self._purge_table(name)
        checked = list(tables)
        if self.output.out is not None and self._is_table("population/membership"):
            self._purge_membership(self.output.out)
            checked.append("population/membership")
        for relative_path, name in parts:
            assert self.output.storage is not None
            removed = parquet.rewrite(
                self.output.storage,
                relative_path,
                name,
                self.authors[name],
                dids=self.involvement.dids,
                involved=self.involved,
                purge_id=record.purge_id,
            )
            self._count(name, removed)
        self._check_erased(checked, parts)
        return self.summary

    # step 7: finish (step 6, the other copies: ``purge.copies``) ----------------------------

    def finish(self, summary: PurgeSummary) -> None:
        record = self.record
        self.staging.drop_purge(record.purge_id)
        self.state.purges.finish(
            record.purge_id,
            uris={uri for _, uri, _ in self.involved},
            cache_files=summary.cache_files,
            rows=summary.rows,
            now=time.time(),
        )
        if not self.state.truncate_wal():
            log.warning("a reader kept the state's WAL from being truncated; the next purge does it")
        failpoint(Step.PURGE_FINISHED)

    # step 1: the writer ---------------------------------------------------------------------

    def _wait_for_writer(self, version: int) -> None:
        """Return once no writer can write for the old population: none runs (one that starts
        now reads the new one), or the running one has committed the new version."""
        if not writer_running(self.root):
            return
        deadline = time.monotonic() + self.writer_timeout
        while self.state.population.seen_version() < version:
            if time.monotonic() > deadline:
                holder = WriterLock(self.root).holder() or "a writer"
                waited = (
                    f"{holder} holds the cache and did not apply the new population within "
                    f"{self.writer_timeout:.0f}s"
                )
                why = (
                    "(a writer does at its next flush: is it receiving frames?)"
                    if "syncstream.backfill" not in holder
                    else "(a backfill never does: purge once it has finished)"
                )
                raise PurgeError(
                    f"{waited} {why}; the purge is recorded, and the next purge or export finishes it"
                )
            time.sleep(0.05)

    # step 2: the export's runs --------------------------------------------------------------

    def _settle_export(self) -> None:
        """Commit the export runs recorded before a crash; remove data files no run will commit
        (their cache files are still claimed: the next export writes them again). Only in the
        output the runs belong to: the one exported to last."""
        if not self.output.settle:
            return
        if self.output.out is not None:
            for run in self.staging.runs():
                if run.format == "delta":
                    from syncstream.lake.delta import commit_run  # noqa: PLC0415 (delta-rs)

                    commit_run(self.output.out, run, self.datasets)
        if self.output.storage is not None:
            self.output.storage.remove(
                sorted(self.staging.pending_outputs(self.state.exports.claim_committed))
            )

    def _outputs(self) -> tuple[list[str], list[tuple[str, str]]]:
        """The datasets that are Delta tables, and (relative path, dataset) of every file of
        those that are plain Parquet: the registry's, and any other found under the output."""
        tables: list[str] = []
        parts: list[tuple[str, str]] = []
        from syncstream.lake.study_record import RECORD_TABLES  # noqa: PLC0415 (delta-rs)

        names = list(self.datasets)
        if self.output.storage is not None:
            names += [name for name in self.output.storage.list_datasets() if name not in self.datasets]
        names = [name for name in names if name not in RECORD_TABLES]  # rewritten from the state
        for name in names:
            if self.output.out is not None:
                from syncstream.lake.delta import is_table  # noqa: PLC0415 (delta-rs)

                if is_table(self._where(name)):
                    if self._foreign(name, tables=True):
                        tables.append(name)
                    continue
            if self.output.storage is not None and self._foreign(name, tables=False):
                parts += [(path, name) for path in self.output.storage.list_parts(name)]
        return tables, parts

    def _foreign(self, name: str, *, tables: bool) -> bool:
        """Whether the purge can go through ``name``: a dataset of the registry, or another's
        whose rows say whose they are (its author column is noted)."""
        if name in self.authors:
            return True
        if tables:
            from syncstream.purge.tables import author_column  # noqa: PLC0415 (delta-rs)

            column = author_column(self._where(name))
        else:
            assert self.output.storage is not None
            found = self.output.storage.list_parts(name)
            fields = self.output.storage.schema(found[0]).names if found else []
            column = next((c for c in ("author_did", "did") if c in fields), None)
        if column is None:
            log.warning("%s under the output has no author_did or did column: no row of it can be "
                        "an account's, so the purge passes it over", name)  # fmt: skip
            return False
        log.info("%s is not a dataset of this registry: its rows of the accounts go by author", name)
        self.authors[name] = column
        return True

    def _is_table(self, name: str) -> bool:
        from syncstream.lake.delta import is_table  # noqa: PLC0415 (delta-rs)

        return is_table(self._where(name))

    def _where(self, name: str) -> Any:
        from syncstream.lake.delta import location  # noqa: PLC0415 (delta-rs)

        assert self.output.out is not None
        return location(self.output.out, name)

    # step 3: what is involved -------------------------------------------------------------

    def _note(self, dataset: str, config: HandlerConfig | None, row: _Row) -> None:
        if row.uri is not None and self.involvement.selected(config, row.operation, row.author, row.record):
            self.involved.add((dataset, row.uri, row.status or ""))

    def _note_rows(self, name: str, rows: Iterable[tuple[Any, ...]]) -> None:
        for operation, author, uri, record_json, record_type, status, *linked in rows:
            if linked and linked[0] and uri is not None:  # collected because of them, erased since
                self.involved.add((name, uri, status or ""))
                continue
            config = self.involvement.handler(name, record_type, status)
            record = json.loads(record_json) if record_json is not None else None
            self._note(name, config, _Row(operation, author, uri, record, status))

    # step 5: the output -------------------------------------------------------------------

    def _purge_table(self, name: str) -> None:
        """Remove the involved rows in one commit, then vacuum what it replaced."""
        from syncstream.purge.tables import remove_rows, vacuum  # noqa: PLC0415 (delta-rs)

        where = self._where(name)
        involved = [(uri, status) for named, uri, status in self.involved if named == name]
        removed, _ = remove_rows(
            where,
            self.authors[name],
            self.involvement.dids,
            involved,
            purge_id=self.record.purge_id,
            on_committed=lambda: failpoint(Step.PURGE_TABLE_DELETED),
        )
        self.summary.vacuumed += len(vacuum(where))
        failpoint(Step.PURGE_VACUUMED)
        self._count(name, removed)

    def _purge_membership(self, out: str) -> None:
        """The study's record: this store's rows rewritten from its state (which step 1 took
        the accounts' spells out of), then the accounts' rows in other stores' files erased."""
        from syncstream.lake.study_record import MEMBERSHIP, erase_accounts, write_study_record  # noqa: PLC0415

        write_study_record(out, self.state, existing_only=True)
        self._count(MEMBERSHIP, erase_accounts(out, self.involvement.dids))

    def _check_erased(self, tables: list[str], parts: list[tuple[str, str]]) -> None:
        """Read every dataset again: no row of the accounts is left, or the purge fails (it is
        recorded unfinished, so the next purge or export tries again)."""
        left: dict[str, int] = {}
        dids = self.involvement.dids
        for name in tables:
            from syncstream.purge.tables import authored_rows  # noqa: PLC0415 (delta-rs)

            left[name] = authored_rows(self._where(name), self.authors[name], dids)
        storage = self.output.storage
        for name in sorted({name for _, name in parts}):
            assert storage is not None
            for relative_path in storage.list_parts(name):  # as rewritten
                count = parquet.authored_rows(storage, relative_path, self.authors[name], dids)
                left[name] = left.get(name, 0) + count
        remaining = {name: count for name, count in left.items() if count}
        if remaining:
            raise PurgeError(
                "rows of the purged accounts are still in "
                + ", ".join(f"{name} ({count})" for name, count in sorted(remaining.items()))
                + "; the purge is recorded unfinished"
            )

    def _count(self, name: str, removed: int) -> None:
        if removed:
            self.summary.rows += removed
            self.summary.parts += 1
            self.summary.datasets[name] = self.summary.datasets.get(name, 0) + removed
