"""``python -m syncstream.export``: the cache -> date-partitioned Parquet datasets."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncstream.cli import add_store_options, setup_logging
from syncstream.errors import CacheLockedError, SyncstreamError
from syncstream.export.storage_options import StorageOptions
from syncstream.failpoints import set_process

if TYPE_CHECKING:
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
    setup_logging(args.quiet)
    if args.inline_parquet:
        from syncstream.export.parts import spare_pyarrow_the_pandas_import  # noqa: PLC0415

        spare_pyarrow_the_pandas_import()
    if args.batch_files < 1:
        parser.error("--batch-files must be at least 1")
    if args.batch_bytes < 1:
        parser.error("--batch-bytes must be at least 1")
    if args.connect_timeout <= 0 or args.request_timeout <= 0:
        parser.error("--connect-timeout and --request-timeout must be positive")
    if args.dedup_window_hours < 0:
        parser.error("--dedup-window-hours must not be negative")
    if args.clear_cache and (args.keep_cache or args.dry_run):
        parser.error("--clear-cache cannot be combined with --keep-cache or --dry-run")
    set_process("export-inline" if args.inline_parquet else "export")
    storage_options = StorageOptions(
        connect_timeout=args.connect_timeout, request_timeout=args.request_timeout
    )
    try:
        parts = None if args.inline_parquet else _start_helper(args.out, storage_options)
        from syncstream.cache import WriterLock, reset_tree  # noqa: PLC0415
        from syncstream.context import setup_batch_export_system  # noqa: PLC0415
        from syncstream.export.batch import export_batch  # noqa: PLC0415

        context = setup_batch_export_system(
            args.cache_dir,
            args.state,
            args.out,
            batch_files=args.batch_files,
            batch_bytes=args.batch_bytes,
            dedup_window_hours=args.dedup_window_hours,
            parts=parts,
            storage_options=storage_options,
        )
    except (SyncstreamError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    writer_lock = WriterLock(context.cache_root)
    started = time.perf_counter()

    def progress(summary: ExportSummary) -> None:
        log.info(
            "batch %d: %d cache files read, %d rows so far (%.0f files/s)",
            summary.batches,
            summary.cache_files,
            summary.rows,
            summary.cache_files / max(time.perf_counter() - started, 1e-9),
        )

    try:
        if args.clear_cache:
            writer_lock.acquire()  # held through export and reset: no writer may start between
        summary = export_batch(
            context,
            remove=not args.keep_cache,
            dry_run=args.dry_run,
            progress=progress,
            purge_deleted=not args.keep_deleted_accounts,
        )
        if args.clear_cache:
            writer_lock.release()
            reset_tree(context.cache_root, (config.directory for config in context.handlers.values()))
    except CacheLockedError as error:
        print(
            f"error: {error}; nothing was exported" if args.clear_cache else f"error: {error}",
            file=sys.stderr,
        )
        return 1
    except Exception as error:
        log.debug("export failed", exc_info=True)
        print(f"error: export failed: {error}; the cache is intact", file=sys.stderr)
        return 1
    finally:
        writer_lock.release()
        context.close()
    _print_summary(summary, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
