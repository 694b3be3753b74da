"""``python -m syncstream.purge``: remove accounts (a withdrawal) from the population, the cache,
the state and every dataset, exactly once."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from returns.result import Failure

from syncstream.cli import (
    environment_problem,
    fail,
    load_registry,
    run,
    setup_logging,
)
from syncstream.errors import ConfigError, SyncstreamError
from syncstream.failpoints import set_process
from syncstream.purge.options import PurgeOptions, parse
from syncstream.signals import Stops
from syncstream.store import PurgeReason, StateStore
from syncstream.users import read_user_file

if TYPE_CHECKING:
    from syncstream.registry.handlers import Registry

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    setup_logging(args.quiet, args.log_format)
    # A withdrawal is one unit: a stop lets it finish (it would be retried, but not now).
    with Stops("finishing the purge under way, then exiting"):
        return _main(args)


def _main(args: PurgeOptions) -> int:
    if (problem := environment_problem()) is not None:
        fail(problem, event="bad_environment")
        return 2
    dids = list(args.did)
    if args.dids_file is not None:
        match read_user_file(args.dids_file):
            case Failure(message):
                fail(message, event="bad_dids_file")
                return 2
            case result:
                dids += result.unwrap()
    if not dids and not args.list and not args.forget_output:  # a DIDs file with none in it
        fail(f"{args.dids_file} names no account to purge", event="bad_dids_file")
        return 2
    root = os.path.realpath(args.cache_dir)
    if not args.list and not os.path.isdir(root):
        fail(f"no cache at {os.path.abspath(args.cache_dir)}", event="no_cache")
        return 2
    set_process("purge")
    try:
        handlers = None if args.list else load_registry(args.handlers)
        state = StateStore(args.state, create=False)  # only the writer creates a store
    except SyncstreamError as error:
        fail(str(error), event="purge_not_started")
        return 2
    try:
        if handlers is None:
            _print_history(state)
            return 0
        from syncstream.preflight import check_cache_tree, check_written  # noqa: PLC0415

        try:  # a registry without what wrote to the store would leave its rows behind
            state.cache_home.check(root)  # (and another store's cache, its files)
            check_written(state, handlers)
            check_cache_tree(root, handlers)
        except SyncstreamError as error:
            fail(str(error), event="registry_refused")
            return 2
        for out in args.forget_output:
            if not state.catalog.forget_output(out):
                fail(f"this store never exported to {out}: nothing to forget", event="purge_refused")
                return 2
            print(f"forgot the output {out}: no purge goes there any more")
        return _purge(args, root, state, dids, handlers)
    finally:
        state.close()


def _purge(args: PurgeOptions, root: str, state: StateStore, dids: list[str], handlers: Registry) -> int:
    from syncstream.lake.storage import storage_for  # noqa: PLC0415 (pyarrow: only when purging)
    from syncstream.purge.protocol import purge_accounts  # noqa: PLC0415

    started = time.perf_counter()
    try:
        storage = storage_for(args.out) if args.out is not None else None
        summaries = purge_accounts(
            root,
            state,
            storage,
            handlers,
            dids,
            reason=PurgeReason.WITHDRAWAL,
            writer_timeout=args.writer_timeout,
            out=args.out,
        )
    except ConfigError as error:  # an output the store never made: nothing recorded
        fail(str(error), event="purge_refused")
        return 2
    except (SyncstreamError, OSError) as error:
        fail(f"purge failed: {error}", event="purge_failed")
        return 1
    for summary in summaries:
        label = "finished interrupted purge" if summary.recovered else "purged"
        print(
            f"{label} {summary.purge_id} ({summary.reason}) of {', '.join(summary.dids)}: "
            f"{summary.rows} rows removed from {summary.parts} tables or Parquet files "
            f"({summary.vacuumed} replaced files vacuumed), {summary.cache_files} cache files removed"
        )
        for name, rows in sorted(summary.datasets.items()):
            print(f"  {name}: {rows} rows")
        print(
            f"  in {summary.outputs} outputs; {summary.snapshots} snapshots re-issued "
            f"({summary.snapshot_rows} rows removed), {summary.record_files} record files rewritten "
            f"({summary.frames} frames removed), {summary.scratch} scratch directories and "
            f"{summary.bookkeeping} bookkeeping entries removed"
        )
    print(f"in {time.perf_counter() - started:.2f}s")
    return 0


def _print_history(state: StateStore) -> None:
    records = state.purges.records()
    if not records:
        print("no purges recorded")
    for record in records:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.started_at))
        status = (
            f"{record.rows} rows, {record.cache_files} cache files"
            if record.finished_at is not None
            else "unfinished"
        )
        print(f"{record.purge_id} {when} {record.reason}: {', '.join(record.dids)} ({status})")


if __name__ == "__main__":
    run(main)
