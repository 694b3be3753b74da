"""``python -m syncstream.export``: the cache -> date-partitioned Parquet datasets."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncstream.cli import add_store_options, environment_problem, fail, load_registry, run, setup_logging
from syncstream.errors import CacheLockedError, SyncstreamError
from syncstream.export.progress import ExportProgress
from syncstream.failpoints import set_process
from syncstream.storage_options import StorageOptions

if TYPE_CHECKING:
    from syncstream.compact import CompactSummary
    from syncstream.export.batch import ExportSummary
    from syncstream.export.parts import PartWrites

__all__ = ["main"]

log = logging.getLogger("syncstream.export")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m syncstream.export",
        description=(
            "Phase 2 of syncstream: export the cache to Parquet datasets at "
            "{out}/{service}/{record_type}/partition_date=YYYY-MM-DD/*.parquet, exactly once, "
            "and remove the exported files from the cache. Safe to run while the writer runs."
        ),
        epilog=(
            "Exit status: 0 when everything was exported; 1 when the export failed (the cache is "
            "intact: the next export finishes or redoes what this one began) or another export "
            "holds the cache; 2 for bad options, a missing cache, an output that cannot be opened or a "
            "state file that is not a syncstream store. Cache files that cannot become rows are "
            "moved to {cache}/.set-aside/ and counted; symbolic links inside the cache are left alone."
        ),
    )
    add_store_options(parser, state_help="the writer's SQLite state store")
    parser.add_argument(
        "--out",
        default="syncstream-parquet",
        help="output directory, or a pyarrow.fs URI such as s3://bucket/prefix (default: %(default)s)",
    )
    parser.add_argument(
        "--keep-cache", action="store_true", help="leave exported files in the cache (default: remove them)"
    )
    parser.add_argument(
        "--keep-deleted-accounts",
        action="store_true",
        help="do not purge the accounts the writer saw deleted (an #account event with status "
        "deleted); by default each export purges them first, as `python -m syncstream.purge` does",
    )
    parser.add_argument(
        "--writer-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="when a purge runs first: seconds to wait for a running writer to apply the new "
        "population; if it does not, nothing is exported (exit 1) (default: %(default)s)",
    )
    parser.add_argument(
        "--clear-cache",
        action="store_true",
        help="after exporting, reset the whole cache tree; refused while a writer holds the cache",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="read and count what would be exported; change nothing"
    )
    parser.add_argument(
        "--batch-files",
        type=int,
        default=1_000,
        help="cache files per batch; bounds memory (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-bytes",
        type=int,
        default=16 << 20,
        help="... and about this many bytes of cache files per batch, for large records "
        "(default: %(default)s, 16 MiB)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="object storage (s3://): seconds to connect before the attempt fails (default: %(default)s)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="object storage (s3://): seconds per request before it fails (default: %(default)s)",
    )
    parser.add_argument(
        "--dedup-window-hours",
        type=float,
        default=72.0,
        help="how long exported keys are remembered, so replayed events add no rows (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="after each export, write node-exporter textfile metrics to PATH (atomically): rows by "
        "dataset, files, duration, last success, failures",
    )
    parser.add_argument(
        "--every",
        metavar="DURATION",
        help="export again every DURATION (90s, 15m, 1h, 1d) until SIGTERM or SIGINT, printing "
        "each run's summary: a scheduler for hosts without cron or systemd timers",
    )
    parser.add_argument(
        "--format",
        choices=("delta", "parquet"),
        default="delta",
        help="delta: each dataset a Delta table, one commit per table per export (default); "
        "parquet: plain Hive-partitioned Parquet files, for readers without Delta",
    )
    parser.add_argument(
        "--compact-every",
        metavar="DURATION",
        help="with --every: also run `python -m syncstream.compact` (its defaults) after the export "
        "once every DURATION (1d, 12h); its figures go to the metrics file",
    )
    parser.add_argument(
        "--progress-seconds",
        type=float,
        default=10.0,
        help="seconds between progress lines on stderr (totals so far and rates); one more at the "
        "end of each export (default: %(default)s)",
    )
    parser.add_argument(
        "--inline-parquet",
        action="store_true",
        help="build and write Parquet in this process instead of a helper process beside it (one "
        "core instead of two; the helper builds chunk N's tables while this reads chunk N+1)",
    )
    return parser


def _print_summary(summary: ExportSummary, seconds: float) -> None:
    for purge in summary.purges:
        print(
            f"purged {', '.join(purge.dids)} ({purge.reason}): {purge.rows} rows removed from "
            f"{purge.parts} Parquet files, {purge.cache_files} cache files removed"
        )
    verb = "would export" if summary.dry_run else "exported"
    print(f"{verb} {summary.rows} rows from {summary.cache_files} cache files in {seconds:.2f}s")
    for name, stats in sorted(summary.datasets.items()):
        if summary.dry_run:
            print(f"  {name}: {stats.rows} rows")
        else:
            print(f"  {name}: {stats.rows} rows, {stats.files} files, {stats.bytes} bytes")
    for label, count in (
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
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.quiet, args.log_format)
    if (problem := environment_problem()) is not None:
        fail(problem, event="bad_environment")
        return 2
    if args.inline_parquet:
        from syncstream.export.parts import spare_pyarrow_the_pandas_import  # noqa: PLC0415

        spare_pyarrow_the_pandas_import()
    if args.batch_files < 1:
        parser.error("--batch-files must be at least 1")
    if args.batch_bytes < 1:
        parser.error("--batch-bytes must be at least 1")
    if args.connect_timeout <= 0 or args.request_timeout <= 0:
        parser.error("--connect-timeout and --request-timeout must be positive")
    if args.writer_timeout <= 0:
        parser.error("--writer-timeout must be positive")
    if args.progress_seconds <= 0:
        parser.error("--progress-seconds must be positive")
    if args.dedup_window_hours < 0:
        parser.error("--dedup-window-hours must not be negative")
    if args.clear_cache and (args.keep_cache or args.dry_run):
        parser.error("--clear-cache cannot be combined with --keep-cache or --dry-run")
    every = compact_every = None
    if args.every is not None or args.compact_every is not None:
        from syncstream.export.metrics import parse_duration  # noqa: PLC0415

        try:
            every = parse_duration(args.every) if args.every is not None else None
            compact_every = parse_duration(args.compact_every) if args.compact_every is not None else None
        except ValueError as error:
            parser.error(str(error))
        if compact_every is not None and (every is None or args.format != "delta"):
            parser.error("--compact-every needs --every and Delta tables")
    args.compact_every_seconds = compact_every
    set_process("export-inline" if args.inline_parquet else "export")
    if every is None:
        return _export_and_report(args)
    return _every(args, every)


def _every(args: argparse.Namespace, period: float) -> int:
    """Export every ``period`` seconds until SIGTERM or SIGINT (a run under way finishes); a
    SIGHUP (a terminal's hangup) is logged and changes nothing. The exit status is the last
    run's: 1 when it failed (and so when every run did), 2 at once for bad input."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            log.info("%s: ignored (the export has nothing to reload); SIGTERM stops it", name,
                     extra={"event": "signal_ignored", "fields": {"signal": name}})  # fmt: skip
            return
        log.info("%s: stopping after this run", name, extra={"event": "stopping", "fields": {"signal": name}})
        stop.set()

    signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    previous = {signum: signal.signal(signum, on_signal) for signum in signals}
    try:
        runs = failures = status = 0
        compacted = time.monotonic()  # the first compaction one period after the start
        while not stop.is_set():
            started = time.monotonic()
            due = args.compact_every_seconds is not None and started - compacted >= args.compact_every_seconds
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
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _export_and_report(args: argparse.Namespace, *, compact: bool = False) -> int:
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
                rows={} if summary is None else {name: d.rows for name, d in summary.datasets.items()},
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
    from syncstream.compact import compact_tables, format_summary  # noqa: PLC0415
    from syncstream.registry.handlers import datasets_of  # noqa: PLC0415

    try:
        summary = compact_tables(out, datasets_of(load_registry(handlers)).values())
    except Exception as error:
        log.warning("compaction failed: %s (the next one tries again)", error)
        return None
    print(format_summary(summary))
    return summary


def _export(args: argparse.Namespace) -> tuple[int, ExportSummary | None]:
    storage_options = StorageOptions(
        connect_timeout=args.connect_timeout, request_timeout=args.request_timeout
    )
    try:
        handlers = load_registry(args.handlers)  # before the helper: a bad one starts nothing
        parts = None if args.inline_parquet else _start_helper(args.out, storage_options)
        from syncstream.cache import WriterLock, reset_tree  # noqa: PLC0415
        from syncstream.export.batch import export_batch  # noqa: PLC0415
        from syncstream.export.context import setup_batch_export_system  # noqa: PLC0415

        context = setup_batch_export_system(
            args.cache_dir,
            args.state,
            args.out,
            batch_files=args.batch_files,
            batch_bytes=args.batch_bytes,
            dedup_window_hours=args.dedup_window_hours,
            parts=parts,
            storage_options=storage_options,
            handlers=handlers,
            format=args.format,
        )
    except (SyncstreamError, OSError, ValueError) as error:
        fail(str(error), event="export_not_started")
        return 2, None
    writer_lock = WriterLock(context.cache_root)
    progress = ExportProgress(args.progress_seconds)

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
    except Exception as error:
        log.debug("export failed", exc_info=True)
        fail(f"export failed: {error}; the cache is intact", event="export_failed")
        return 1, None
    finally:
        writer_lock.release()
        context.close()
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
