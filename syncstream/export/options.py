"""The options of ``python -m syncstream.export``: ``ExportOptions``, which the command and
``setup_batch_export_system`` share, and the parser that builds them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import msgspec

from syncstream.config import parse_options
from syncstream.errors import ConfigError
from syncstream.lake.storage_options import StorageOptions
from syncstream.options import (
    OUT,
    WRITER_TIMEOUT,
    StoreOptions,
    add_out_option,
    add_store_options,
    duration,
    non_negative_float,
    positive_float,
    positive_int,
)

__all__ = ["ExportOptions", "parse", "parser"]


class ExportOptions(StoreOptions, frozen=True, kw_only=True):
    """Every option of the export, with its default: where from and to, how much at once, what
    to keep, how often. ``ConfigError`` at construction for a value out of range or options
    that cannot go together."""

    POSITIVE = ("writer_timeout", "batch_files", "batch_bytes", "every", "compact_every", "progress_seconds")
    NON_NEGATIVE = ("dedup_window_hours",)

    out: str = OUT  # a directory or a pyarrow.fs URI
    keep_cache: bool = False
    keep_deleted_accounts: bool = False
    keep_deleted_content: bool = False  # a deleted record's content stays in its versions' rows
    writer_timeout: float = WRITER_TIMEOUT
    clear_cache: bool = False
    dry_run: bool = False
    batch_files: int = 1_000  # cache files per chunk: bounds the export's memory ...
    batch_bytes: int = 16 << 20  # ... and their bytes, for caches of large records
    storage: StorageOptions = msgspec.field(default_factory=StorageOptions)  # object storage timeouts
    dedup_window_hours: float = 72.0  # how long exported keys are remembered (relay replay window)
    metrics_file: str | None = None
    every: float | None = None  # seconds between exports; None: export once
    format: str = "delta"  # "delta": each dataset a Delta table; "parquet": plain Hive-partitioned files
    compact_every: float | None = None  # with every: seconds between compactions
    progress_seconds: float = 10.0
    inline_parquet: bool = False

    def check(self) -> None:
        super().check()
        if self.format not in ("delta", "parquet"):
            raise ConfigError(f"format must be delta or parquet, not {self.format!r}")
        if self.clear_cache and (self.keep_cache or self.dry_run):
            raise ConfigError("--clear-cache cannot be combined with --keep-cache or --dry-run")
        if self.compact_every is not None and (self.every is None or self.format != "delta"):
            raise ConfigError("--compact-every needs --every and Delta tables")


def parse(argv: Sequence[str] | None) -> ExportOptions:
    """The command line's options; a usage error (exit 2) for a bad one."""
    return parse_options(ExportOptions, parser(), argv)


def parser() -> argparse.ArgumentParser:
    defaults = ExportOptions()
    parser = argparse.ArgumentParser(
        prog="syncstream export",
        description=(
            "Phase 2 of syncstream: export the cache to a Delta table per dataset at "
            "{out}/{service}/{record_type}, partitioned by partition_date (plain Parquet files "
            "with --format parquet), exactly once, and remove the exported files from the cache. "
            "Safe to run while the writer runs."
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
    add_out_option(parser, what="output")
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
        "--keep-deleted-content",
        action="store_true",
        help="keep the content (record_json and the columns taken from the record) of every "
        "version of a deleted record, for a study whose ethics approval covers it; each table "
        "records the choice in its properties (syncstream.deleted_content). By default a delete "
        "erases that content from the Delta tables at the export that brings it (a plain-Parquet "
        "output keeps it)",
    )
    parser.add_argument(
        "--writer-timeout",
        type=positive_float,
        default=defaults.writer_timeout,
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
        type=positive_int,
        default=defaults.batch_files,
        help="cache files per batch; bounds memory (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-bytes",
        type=positive_int,
        default=defaults.batch_bytes,
        help="... and about this many bytes of cache files per batch, for large records "
        "(default: %(default)s, 16 MiB)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=defaults.storage.connect_timeout,
        metavar="SECONDS",
        help="object storage (s3://): seconds to connect before the attempt fails (default: %(default)s)",
    )
    parser.add_argument(
        "--request-timeout",
        type=positive_float,
        default=defaults.storage.request_timeout,
        metavar="SECONDS",
        help="object storage (s3://): seconds per request before it fails (default: %(default)s)",
    )
    parser.add_argument(
        "--dedup-window-hours",
        type=non_negative_float,
        default=defaults.dedup_window_hours,
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
        type=duration,
        metavar="DURATION",
        help="export again every DURATION (90s, 15m, 1h, 1d) until SIGTERM or SIGINT, printing "
        "each run's summary: a scheduler for hosts without cron or systemd timers",
    )
    parser.add_argument(
        "--format",
        choices=("delta", "parquet"),
        default=defaults.format,
        help="delta: each dataset a Delta table, one commit per table per export (default); "
        "parquet: plain Hive-partitioned Parquet files, for readers without Delta",
    )
    parser.add_argument(
        "--compact-every",
        type=duration,
        metavar="DURATION",
        help="with --every: also run `python -m syncstream.lake.compact` (its defaults) after the export "
        "once every DURATION (1d, 12h); its figures go to the metrics file",
    )
    parser.add_argument(
        "--progress-seconds",
        type=positive_float,
        default=defaults.progress_seconds,
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
