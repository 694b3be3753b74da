"""``syncstream export``: the cache -> date-partitioned Delta tables."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncstream.cli import environment_problem, fail, load_registry, run, setup_logging
from syncstream.errors import CacheLockedError, ConfigError, HelperError, SyncstreamError
from syncstream.export.options import ExportOptions, parse
from syncstream.export.progress import ExportProgress
from syncstream.failpoints import set_process
from syncstream.signals import StopRequest, Stops

if TYPE_CHECKING:
    from syncstream.export.parts import PartWrites
    from syncstream.export.summary import ExportSummary
    from syncstream.lake.compact import CompactSummary
    from syncstream.lake.storage_options import StorageOptions

__all__ = ["main"]

log = logging.getLogger("syncstream.export")


def _print_summary(summary: ExportSummary, seconds: float) -> None:
    for purge in summary.purges:
        print(
            f"purged {', '.join(purge.dids)} ({purge.reason}): {purge.rows} rows removed from "
            f"{purge.parts} Parquet files, {purge.cache_files} cache files removed"
        )
    for recovered in summary.recovered_runs:
        rows = sum(recovered.rows.values())
        print(f"recovered run {recovered.claim}: {rows} rows committed (recorded by an interrupted export)")
    verb = "would export" if summary.dry_run else "exported"
    print(f"{verb} {summary.rows} rows from {summary.cache_files} cache files in {seconds:.2f}s")
    for name, stats in sorted(summary.datasets.items()):
        if summary.dry_run:
            print(f"  {name}: {stats.rows} rows")
        else:
            print(f"  {name}: {stats.rows} rows, {stats.files} files, {stats.bytes} bytes")
    for label, count in (
        ("versions of deleted records erased (their content)", summary.erased),
        ("duplicates dropped", summary.duplicates),
        ("files set aside (not exportable, in .set-aside/)", summary.unreadable),
        ("symbolic links left alone", summary.links_skipped),
        ("interrupted exports finished", summary.recovered_claims),
    ):
        if count:
            print(f"{label}: {count}")


def _start_helper(out: str, options: StorageOptions) -> PartWrites:
    """The Parquet helper, started before the rest of the exporter is even imported: its own
    start-up (pyarrow) then runs beside ours instead of after it."""
    from syncstream.export.parts import HelperParts  # noqa: PLC0415

    return HelperParts(out, options=options.to_args())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    setup_logging(args.quiet, args.log_format)
    if (problem := environment_problem()) is not None:
        fail(problem, event="bad_environment")
        return 2
    if args.inline_parquet:
        from syncstream.export.arrow import spare_pyarrow_the_pandas_import  # noqa: PLC0415

        spare_pyarrow_the_pandas_import()
    set_process("export-inline" if args.inline_parquet else "export")
    if args.every is None:
        # A run is one unit: a stop lets it finish (its commit, its cache removed) and exits 0.
        with Stops("finishing the export under way, then exiting"):
            return _export_and_report(args)
    hangup = "ignored: the export has nothing to reload; SIGTERM stops it"
    with Stops("stopping after this run", hangup=hangup) as stops:
        return _every(args, args.every, stops.flag)


def _every(args: ExportOptions, period: float, stop: StopRequest) -> int:
    """Export every ``period`` seconds until ``stop`` (SIGTERM or SIGINT: a run under way
    finishes; a SIGHUP is logged and changes nothing). The exit status is the last run's: 1 when
    it failed (and so when every run did), 2 at once for bad input."""
    runs = failures = status = 0
    compacted = time.monotonic()  # the first compaction one period after the start
    while not stop.is_set():
        started = time.monotonic()
        due = args.compact_every is not None and started - compacted >= args.compact_every
        status = _export_and_report(args, compact=due)
        sys.stdout.flush()  # each run's summary when it happens, also into a pipe or a journal
        if due:
            compacted = started
        runs += 1
        failures += status != 0
        if status == 2:
            return 2  # bad input does not get better by waiting
        stop.wait(max(period - (time.monotonic() - started), 0.0))
    log.info("%d exports, %d failed", runs, failures,
             extra={"event": "stopped", "fields": {"runs": runs, "failures": failures}})  # fmt: skip
    return 1 if status else 0


def _export_and_report(args: ExportOptions, *, compact: bool = False) -> int:
    """One export, its summary printed and (with --metrics-file) its metrics written; with
    ``compact``, a compaction of the tables after it. A metrics file that cannot be written
    fails the run (exit 1: the monitoring would be blind) after the summary of what was
    exported."""
    started = time.perf_counter()
    status, summary = _export(args)
    compaction = None
    if compact and status == 0:
        compaction = _compact(args.out, args.handlers)
    seconds = time.perf_counter() - started
    if summary is not None:
        _print_summary(summary, seconds)
        print(f"cache: {os.path.realpath(args.cache_dir)}\nstate: {os.path.abspath(args.state)}")
        print(f"output: {args.out if '://' in args.out else os.path.abspath(args.out)}")
    if args.metrics_file is not None and not args.dry_run:
        from syncstream.export.metrics import write_export_metrics  # noqa: PLC0415

        try:
            write_export_metrics(
                args.metrics_file,
                success=status == 0,
                seconds=seconds,
                rows={} if summary is None else summary.committed_rows(),
                files=0 if summary is None else summary.cache_files,
                now=time.time(),
                datasets=_datasets(args.handlers),
                commits=0 if summary is None else summary.commits,
                compaction=compaction,
            )
        except OSError as error:
            done = "; the export itself succeeded" if status == 0 else ""
            fail(
                f"cannot write the metrics file {args.metrics_file}: {error}{done}",
                event="metrics_unwritable",
            )
            return status or 1
    return status


def _compact(out: str, handlers: str | None) -> CompactSummary | None:
    from syncstream.lake.compact import CompactOptions, compact_tables, format_summary  # noqa: PLC0415
    from syncstream.registry.handlers import datasets_of  # noqa: PLC0415

    try:
        summary = compact_tables(CompactOptions(out=out), datasets_of(load_registry(handlers)).values())
    except Exception as error:
        log.warning("compaction failed: %s (the next one tries again)", error)
        return None
    print(format_summary(summary))
    return summary


def _export(args: ExportOptions) -> tuple[int, ExportSummary | None]:
    try:
        handlers = load_registry(args.handlers)  # before the helper: a bad one starts nothing
        parts = None if args.inline_parquet else _start_helper(args.out, args.storage)
        from syncstream.cache import WriterLock, reset_tree  # noqa: PLC0415
        from syncstream.export.batch import export_batch  # noqa: PLC0415
        from syncstream.export.context import setup_batch_export_system  # noqa: PLC0415

        context = setup_batch_export_system(args, parts=parts, handlers=handlers)
    except HelperError as error:  # not bad input: the helper died (a rerun may well succeed)
        fail(f"{error}; nothing was exported", event="export_not_started")
        return 1, None
    except (SyncstreamError, OSError, ValueError) as error:
        fail(str(error), event="export_not_started")
        return 2, None
    writer_lock = WriterLock(context.cache_root)
    progress = ExportProgress(args.progress_seconds)

    with context:
        try:
            if args.clear_cache:
                writer_lock.acquire()  # held through export and reset: no writer may start between
            summary = export_batch(
                context,
                remove=not args.keep_cache,
                dry_run=args.dry_run,
                progress=progress,
                purge_deleted=not args.keep_deleted_accounts,
                writer_timeout=args.writer_timeout,
            )
            progress.done(summary)
            if args.clear_cache:
                writer_lock.release()
                kept = reset_tree(context.cache_root, (c.directory for c in context.handlers.values()))
                if kept:  # never exported: a reset removes no file
                    log.warning(
                        "--clear-cache kept %d files it did not export: %s", len(kept), ", ".join(kept[:10])
                    )
        except CacheLockedError as error:
            fail(f"{error}; nothing was exported" if args.clear_cache else str(error), event="cache_locked")
            return 1, None
        except ConfigError as error:  # the output refused at the start: bad input, nothing done
            fail(f"{error}; nothing was exported", event="export_refused")
            return 2, None
        except Exception as error:
            log.debug("export failed", exc_info=True)
            fail(f"export failed: {error}; the cache is intact", event="export_failed")
            return 1, None
        finally:
            writer_lock.release()
    return 0, summary


def _datasets(spec: str | None) -> list[str]:
    """Every dataset of the registry: each has its series in the metrics file, rows or none."""
    from syncstream.registry.handlers import datasets_of  # noqa: PLC0415

    try:
        return list(datasets_of(load_registry(spec)))
    except SyncstreamError:  # the export said why already
        return []


if __name__ == "__main__":
    run(main)
