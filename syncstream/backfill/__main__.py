"""``python -m syncstream.backfill``: study users' history, from their PDS into the cache."""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncstream.backfill.options import add_fetch_options, check_fetch_options
from syncstream.cli import (
    add_store_options,
    did_argument,
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m syncstream.backfill",
        description=(
            "Backfill study users' history: resolve each DID (did:plc through the PLC directory, "
            "did:web over HTTPS), fetch its repository from its PDS (com.atproto.sync.getRepo, "
            "streamed to disk, with a deadline and a minimum rate), verify its signed commit "
            "against the DID document's key, walk its MST from the commit, checking every block "
            "against its CID, and route every record as a create through the same registry as "
            "live records, into the cache (source = backfill, verified; then `python -m "
            "syncstream.export`). Without --did, every study user not yet backfilled. DIDs "
            "already done are skipped; failed ones are retried after a backoff."
        ),
        epilog=(
            "Exit status: 0 when every DID was backfilled (or skipped as done), or when SIGTERM or "
            "SIGINT stopped the run (what was under way is abandoned and done again by the next "
            "run); 1 when one failed (each is listed with its reason, recorded, and retried by the "
            "next run); 2 for bad options or input (a --did that is not a study user), or a cache "
            "held by a running writer."
        ),
    )
    add_store_options(parser, state_help="the writer's SQLite state store")
    parser.add_argument("--study-users", metavar="FILE", help="replace the study users with this file's DIDs")
    parser.add_argument("--in-network-users", metavar="FILE", help="replace the in-network users")
    parser.add_argument(
        "--did", action="append", default=[], type=did_argument,
        help="backfill this study user (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--plc-url", default="https://plc.directory", help="the PLC directory (default: %(default)s)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="repositories fetched at once (default: %(default)s)"
    )
    add_fetch_options(parser)
    parser.add_argument("--force", action="store_true", help="backfill DIDs already done again")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.quiet, args.log_format)
    if (problem := environment_problem()) is not None:
        fail(problem, event="bad_environment")
        return 2
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    check_fetch_options(parser, args)
    from syncstream.backfill.options import make_fetcher  # noqa: PLC0415
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
    fetcher = make_fetcher(args, args.plc_url.rstrip("/"))  # the SDK imported before any thread
    stop = fetcher.stop
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    started = time.perf_counter()
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
            writer, todo, fetcher, concurrency=args.concurrency, scratch=args.scratch_dir, stop=stop
        )
    except (CacheWriteError, HelperError, FailpointError) as error:
        fail(f"{error}; what was under way is backfilled again by the next run", event="backfill_failed")
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        fetcher.close()
        context.close()
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
