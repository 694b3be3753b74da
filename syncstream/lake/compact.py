"""``python -m syncstream.lake.compact``: compact the Delta tables' closed partitions, checkpoint their
logs and vacuum old files.

It holds the output's lock (``syncstream.lake.lock``) throughout: no export or purge commits to
the tables meanwhile. After each table's vacuum, the files a killed compaction or purge left
that no version of the log names are removed (``syncstream.lake.orphans``).

An export commits a few files per partition per run; a study that exports every few minutes
leaves thousands. A partition is *closed* once it is older than ``--older-than-days`` (rows are
partitioned by the writer's receipt date, so exports only ever append to today's): its files
are rewritten into files of about ``--target-mib``, in one commit per partition. A partition
larger than one target file is z-ordered by its author column instead, so that one account's
rows sit in few files (a purge then rewrites those alone). Each table's log is checkpointed,
and files the log marked removed more than ``--retention-hours`` ago are vacuumed (time travel
reaches back that far). Beside a running export or purge it waits for the lock.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import time
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from syncstream.cli import fail, run, setup_logging
from syncstream.config import parse_options
from syncstream.failpoints import failpoint, set_process
from syncstream.lake.lock import LakeLock
from syncstream.options import (
    OUT,
    LogOptions,
    add_log_options,
    add_out_option,
    non_negative_float,
    positive_float,
)
from syncstream.registry.datasets import Dataset
from syncstream.signals import Stops

__all__ = ["CompactOptions", "CompactSummary", "compact_tables", "main"]

log = logging.getLogger("syncstream.lake.compact")


class CompactSummary(msgspec.Struct, kw_only=True):
    tables: int = 0
    partitions: int = 0  # closed partitions rewritten
    files_removed: int = 0
    files_added: int = 0
    z_ordered: int = 0  # of those partitions, z-ordered by author
    vacuumed: int = 0  # files removed from storage
    seconds: float = 0.0
    stopped: str | None = None  # the stop signal that ended it before every partition was done


class CompactOptions(LogOptions, frozen=True, kw_only=True):
    """Every option of the compaction, with its default."""

    POSITIVE = ("target_mib",)
    NON_NEGATIVE = ("older_than_days", "retention_hours")

    out: str = OUT
    older_than_days: float = 1.0  # partitions older than this are closed, and compacted; 0: all
    target_mib: float = 128.0  # target file size
    retention_hours: float = 168.0  # files removed longer ago than this are vacuumed


def compact_tables(
    options: CompactOptions,
    datasets: Iterable[Dataset],
    *,
    now: float | None = None,
    stops: Stops | None = None,
) -> CompactSummary:
    """Compact, checkpoint and vacuum each dataset's table under ``options.out`` (those that
    exist). A stop (``stops``) ends it after the partition under way, its commit made:
    ``summary.stopped`` names the signal, and the next compaction does the rest."""
    import pyarrow as pa  # noqa: PLC0415
    from deltalake import DeltaTable  # noqa: PLC0415

    from syncstream.lake.delta import PARTITION, is_table, location  # noqa: PLC0415
    from syncstream.lake.orphans import remove_orphans  # noqa: PLC0415

    target_bytes = int(options.target_mib * (1 << 20))
    started = time.perf_counter()
    summary = CompactSummary()
    today = datetime.datetime.fromtimestamp(now if now is not None else time.time(), datetime.UTC)
    cutoff = (today - datetime.timedelta(days=options.older_than_days)).date().isoformat()
    with LakeLock(options.out, create=False, what="syncstream compact"):
        for dataset in datasets:
            where = location(options.out, dataset.name)
            if not is_table(where):
                continue
            summary.tables += 1
            table = DeltaTable(where.uri, storage_options=where.storage_options)
            failpoint("compact.table_read")
            sizes: dict[str, tuple[int, int]] = {}  # partition -> (files, bytes)
            actions = pa.table(table.get_add_actions(flatten=True))
            dates = actions.column(f"partition.{PARTITION}").to_pylist()
            for date, size in zip(dates, actions.column("size_bytes").to_pylist(), strict=True):
                files, total = sizes.get(str(date), (0, 0))
                sizes[str(date)] = (files + 1, total + int(size))
            for date, (files, size) in sorted(sizes.items()):
                if (options.older_than_days > 0 and date >= cutoff) or files < 2:
                    continue  # open, or compact already
                if stops is not None and stops.requested:
                    summary.stopped = stops.signal
                    break
                filters = [(PARTITION, "=", date)]
                if size > target_bytes:
                    metrics = table.optimize.z_order(
                        [dataset.author_column], partition_filters=filters, target_size=target_bytes
                    )
                    summary.z_ordered += 1
                else:
                    metrics = table.optimize.compact(partition_filters=filters, target_size=target_bytes)
                summary.partitions += 1
                summary.files_removed += int(metrics.get("numFilesRemoved", 0))
                summary.files_added += int(metrics.get("numFilesAdded", 0))
                failpoint("compact.partition_done")
            if summary.stopped is not None:
                del table
                break
            table.create_checkpoint()
            summary.vacuumed += len(
                table.vacuum(
                    retention_hours=int(options.retention_hours),
                    enforce_retention_duration=False,
                    dry_run=False,
                )
            )
            del table
            # a killed compaction's or purge's files, which no version of the log names
            summary.vacuumed += len(remove_orphans(where, keep_hours=options.retention_hours))
    summary.seconds = time.perf_counter() - started
    return summary


def _parser() -> argparse.ArgumentParser:
    defaults = CompactOptions()
    parser = argparse.ArgumentParser(
        prog="syncstream compact",
        description=(
            "Compact each Delta table's closed partitions (z-ordered by author where a partition is "
            "larger than one target file), checkpoint its log and vacuum files removed longer ago "
            "than the retention. It takes turns with exports and purges of the output (a lock)."
        ),
        epilog="Exit status: 0 when done; 1 when a table could not be compacted, or when SIGINT, "
        "SIGTERM or SIGHUP stopped it (after the partition under way); 2 for bad options or an "
        "output that holds no table.",
    )
    add_out_option(parser, what="the export's output")
    parser.add_argument(
        "--older-than-days",
        type=non_negative_float,
        default=defaults.older_than_days,
        help="compact partitions older than this many days; 0 compacts every partition, today's "
        "too (default: %(default)s)",
    )
    parser.add_argument(
        "--target-mib",
        type=positive_float,
        default=defaults.target_mib,
        help="target file size in MiB (default: %(default)s)",
    )
    parser.add_argument(
        "--retention-hours",
        type=non_negative_float,
        default=defaults.retention_hours,
        help="vacuum files removed longer ago than this; time travel reaches back as far "
        "(default: %(default)s)",
    )
    add_log_options(parser)
    return parser


def main(argv: Sequence[str] | None = None, *, datasets: Mapping[str, Dataset] | None = None) -> int:
    parser = _parser()
    args = parse_options(CompactOptions, parser, argv)
    setup_logging(args.quiet, args.log_format)
    set_process("compact")
    with Stops("stopping after the partition under way") as stops:
        return _main(args, datasets, stops)


def _main(args: CompactOptions, datasets: Mapping[str, Dataset] | None, stops: Stops) -> int:
    if datasets is None:
        from syncstream.registry.builtin import HANDLERS  # noqa: PLC0415
        from syncstream.registry.handlers import datasets_of  # noqa: PLC0415

        datasets = datasets_of(HANDLERS)
    try:
        summary = compact_tables(args, datasets.values(), stops=stops)
        if summary.tables == 0:  # a mistyped --out: saying "compacted 0" would hide it
            fail(f"{args.out} holds no Delta table to compact; check --out", event="compact_refused")
            return 2
    except Exception as error:
        log.debug("compaction failed", exc_info=True)
        fail(f"compaction failed: {error}", event="compact_failed")
        return 1
    print(format_summary(summary))
    if summary.stopped is not None:
        fail(f"stopped by {summary.stopped}: the partitions not yet compacted are left to the next "
             "compaction", event="compact_stopped")  # fmt: skip
        return 1
    return 0


def format_summary(summary: CompactSummary) -> str:
    return (
        f"compacted {summary.partitions} partitions of {summary.tables} tables "
        f"({summary.z_ordered} z-ordered by author): {summary.files_removed} files into "
        f"{summary.files_added}; {summary.vacuumed} files vacuumed; in {summary.seconds:.2f}s"
    )


if __name__ == "__main__":
    run(main)
