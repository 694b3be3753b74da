"""``python -m syncstream.backfill``: study users' history, from their PDS into the cache."""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncstream.backfill.options import make_fetcher, parse
from syncstream.cli import (
    environment_problem,
    fail,
    load_registry,
    run,
    setup_logging,
)
from syncstream.errors import CacheWriteError, FailpointError, HelperError, SyncstreamError
from syncstream.failpoints import set_process
from syncstream.store import BackfillStatus

if TYPE_CHECKING:
    from syncstream.write.backfill import BackfillResult

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    setup_logging(args.quiet, args.log_format)
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
    fetcher = make_fetcher(args.fetch, args.plc_url.rstrip("/"))  # the SDK imported before any thread
    stop = fetcher.stop
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)
    }
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
            writer = CacheWriter(context)
            results = backfill_dids(
                writer, todo, fetcher, concurrency=args.concurrency, scratch=args.fetch.scratch_dir, stop=stop
            )
        except (CacheWriteError, HelperError, FailpointError) as error:
            fail(f"{error}; what was under way is backfilled again by the next run", event="backfill_failed")
            return 1
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            fetcher.close()
    return _report(results, len(todo), skipped, time.perf_counter() - started)


def _report(results: list[BackfillResult], todo: int, skipped: int, seconds: float) -> int:
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
    return 1 if failed else 0


if __name__ == "__main__":
    run(main)
