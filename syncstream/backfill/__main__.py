"""``python -m syncstream.backfill``: study users' history, from their PDS into the cache."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncstream.backfill.options import BackfillOptions, make_fetcher, parse
from syncstream.cli import (
    environment_problem,
    fail,
    load_registry,
    run,
    setup_logging,
)
from syncstream.errors import CacheWriteError, FailpointError, HelperError, SyncstreamError
from syncstream.failpoints import set_process
from syncstream.signals import StopFlag, Stops
from syncstream.store import BackfillStatus

if TYPE_CHECKING:
    from syncstream.write.backfill import BackfillResult

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    setup_logging(args.quiet, args.log_format)
    with Stops("abandoning the backfills under way (the next run does them), then exiting") as stops:
        return _main(args, stops.flag)


def _main(args: BackfillOptions, stop: StopFlag) -> int:
    if (problem := environment_problem()) is not None:
        fail(problem, event="bad_environment")
        return 2
    from syncstream.write.backfill import backfill_dids  # noqa: PLC0415
    from syncstream.write.context import setup_cache_write_system  # noqa: PLC0415
    from syncstream.write.writer import CacheWriter  # noqa: PLC0415

    try:
        context = setup_cache_write_system(
            args.cache_dir,
            args.state,
            study_users=args.study_users,
            in_network_users=args.in_network_users,
            handlers=load_registry(args.handlers),
            create_state=False,  # only the writer creates a store
        )
    except (SyncstreamError, OSError) as error:
        fail(str(error), event="backfill_not_started")
        return 2
    strangers = [did for did in args.did if did not in context.population.study]
    if strangers:
        context.close()
        fail(
            f"not a study user: {', '.join(strangers)}; only study users are backfilled "
            "(add them to the study users file, then backfill)",
            event="backfill_not_started",
        )
        return 2
    set_process("backfill")
    fetcher = make_fetcher(args.fetch, args.plc_url.rstrip("/"), stop=stop)  # the SDK before any thread
    started = time.perf_counter()
    with context:
        try:
            wanted = args.did or sorted(context.population.study)
            # named DIDs are tried now; the others when due (a failed one after its backoff)
            todo = context.state.backfills.due(wanted, time.time(), force=args.force or bool(args.did))
            if args.did and not args.force:
                todo = [
                    did
                    for did in todo
                    if context.state.backfills.recorded().get(did, ("",))[0] != BackfillStatus.DONE
                ]
            skipped = len(wanted) - len(todo)
            recorded = context.state.backfills.recorded()
            waiting = [
                did
                for did in wanted
                if did not in todo and did in recorded and recorded[did].status == BackfillStatus.FAILED
            ]
            writer = CacheWriter(context)
            results = backfill_dids(
                writer, todo, fetcher, concurrency=args.concurrency, scratch=args.fetch.scratch_dir, stop=stop
            )
        except (CacheWriteError, HelperError, FailpointError) as error:
            fail(f"{error}; what was under way is backfilled again by the next run", event="backfill_failed")
            return 1
        finally:
            fetcher.close()
    return _report(results, len(todo), skipped, time.perf_counter() - started, waiting=waiting)


def _report(
    results: list[BackfillResult], todo: int, skipped: int, seconds: float, *, waiting: list[str]
) -> int:
    """The per-DID summary; 1 when a DID failed, or when nothing was backfilled and the DIDs
    not done are failed ones waiting for their retry (a run that did nothing is no success)."""
    abandoned = [r for r in results if r.abandoned]
    failed = [r for r in results if r.reason is not None and not r.abandoned]
    records, files = sum(r.records for r in results), sum(r.files for r in results)
    done = len(results) - len(failed) - len(abandoned)
    print(
        f"backfilled {done} of {todo} accounts in {seconds:.2f}s "
        f"({skipped} done or waiting for a retry): {records} records, {files} files"
    )
    if abandoned:
        print(f"stopped: {len(abandoned)} abandoned, backfilled by the next run")
    for result in results:
        if result.reason is None:
            print(f"  {result.did}: rev {result.rev}, {result.records} records, {result.files} files")
        elif result.abandoned:
            print(f"  {result.did}: {result.reason}")
        else:
            print(f"  {result.did}: failed: {result.reason}")
    if failed:
        fail(f"{len(failed)} of {todo} accounts failed: {', '.join(r.did for r in failed)} (each is "
             "retried by the next backfill after its backoff; --did DID tries one now)",
             event="backfill_failed")  # fmt: skip
        return 1
    if done == 0 and not abandoned and waiting:
        fail(f"no account was backfilled: {', '.join(waiting)} failed before and wait for their retry "
             "(see the summary of the run that failed; --did DID tries one now)",
             event="backfill_failed")  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    run(main)
