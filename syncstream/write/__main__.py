"""``python -m syncstream.write``: the cache-write phase, from a replay file or a live relay."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import zstandard

from syncstream.cli import add_store_options, load_registry, setup_logging
from syncstream.context import CacheWriteContext, load_users, setup_cache_write_system
from syncstream.errors import CacheWriteError, HelperError, RelayError, SyncstreamError
from syncstream.failpoints import FailpointError, set_process
from syncstream.state import CURSOR, relay_cursor
from syncstream.write.files import HelperWrites
from syncstream.write.sources import ReplayError, iter_replay
from syncstream.write.writer import PURGE_ACCOUNT_STATUSES, CacheWriter, WriteSummary

if TYPE_CHECKING:
    from syncstream.backfill.background import BackgroundBackfill
    from syncstream.write.metrics import MetricsServer

__all__ = ["main"]

_DATA = Path(__file__).resolve().parent.parent / "data"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m syncstream.write",
        description=(
            "Phase 1 of syncstream: read relay frames (com.atproto.sync.subscribeRepos), keep every "
            "post, like, follow, reply and delete that involves the study population, and write "
            "each as one JSON file in the cache tree. Resumes from the cursor in the state store."
        ),
        epilog=(
            "With no options it replays the bundled sample (150 real relay frames) into "
            "./syncstream-cache with state in ./syncstream-state.sqlite. With --relay it runs until "
            "SIGINT or SIGTERM (which flush and persist the cursor) or --idle-exit; SIGHUP re-reads "
            "the user files. Exit status: 0 when every frame was processed (frames and ops that "
            "cannot be decoded, routed, named or written are counted and passed over); 1 when the "
            "run stopped early: a replay cut inside a frame or not a replay at all (after writing "
            "every whole frame), a cache that cannot take files, a helper process that died, no "
            "frame ever received before --idle-exit; 2 for bad options or input: a user file with "
            "an invalid DID, an empty population (see --allow-empty-population), a state file "
            "that is not a syncstream store, a symbolic link inside the cache."
        ),
    )
    add_store_options(parser, state_help="SQLite state store: users, cursor, cached-URI index")
    parser.add_argument(
        "--study-users",
        help="file of study-user DIDs, one per line, '#' comments; replaces the stored set "
        "(default: the bundled sample when --replay is not given, else the stored set)",
    )
    parser.add_argument(
        "--in-network-users",
        help="file of in-network DIDs (the accounts study users follow), same format; replaces "
        "the stored set (default: the bundled sample when --replay is not given, else the stored set)",
    )
    parser.add_argument(
        "--replay",
        help="replay file of [u32 LE length][frame] records, optionally zstd-compressed as a "
        "whole (default, when --relay is not given: the bundled sample of real frames)",
    )
    parser.add_argument(
        "--relay",
        nargs="?",
        const="wss://bsky.network",
        metavar="URL",
        help="consume a live relay's com.atproto.sync.subscribeRepos instead of a replay "
        "(default URL: %(const)s; a base with or without /xrpc)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--cursor", type=int, help="start after this seq instead of the stored cursor (replay and relay)"
    )
    where.add_argument(
        "--live", action="store_true", help="relay: start from now, ignoring the stored cursor"
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        metavar="SECONDS",
        help="relay: exit 0 once no frame has arrived for this long (default: run until signalled)",
    )
    parser.add_argument(
        "--recv-timeout",
        type=float,
        metavar="SECONDS",
        help="relay: a socket silent this long is stalled and is reconnected (default: 30, or half "
        "of --idle-exit when that is shorter)",
    )
    parser.add_argument(
        "--reconnect-delay",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="relay: base of the exponential reconnect backoff, with jitter (default: %(default)s)",
    )
    parser.add_argument(
        "--progress-seconds",
        type=float,
        default=10.0,
        help="relay: seconds between progress lines on stderr (default: %(default)s)",
    )
    parser.add_argument(
        "--record", metavar="FILE", help="relay: append every received frame to FILE, a replay file"
    )
    parser.add_argument(
        "--track-follows",
        action="store_true",
        help="keep the in-network set current from the stream: a study user's follow adds the "
        "followee, its delete removes it (persisted in the state store)",
    )
    parser.add_argument(
        "--backfill",
        action="store_true",
        help="backfill study users' history from their PDS in the background (those not yet done "
        "at start, those added on SIGHUP, those whose #sync asks for it), holding each one's live "
        "commits until its backfill is done; see python -m syncstream.backfill",
    )
    parser.add_argument(
        "--plc-url",
        default="https://plc.directory",
        help="--backfill: the PLC directory (default: %(default)s)",
    )
    parser.add_argument(
        "--backfill-concurrency",
        type=int,
        default=4,
        help="--backfill: repositories fetched at once (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics and health at /healthz "
        "(200 while a frame arrived within --health-max-age and the cache is writable, else 503)",
    )
    parser.add_argument(
        "--health-max-age",
        type=float,
        default=60.0,
        help="seconds without a frame before /healthz answers 503 (default: %(default)s)",
    )
    parser.add_argument(
        "--index-retention-days",
        type=float,
        default=30.0,
        help="how long the index of others' records cached because of the population (likes on, "
        "replies to, reposts and quotes of study users' posts; follows of them) is kept, so that "
        "their deletes are routed (default: %(default)s)",
    )
    parser.add_argument(
        "--reenrol",
        metavar="DID",
        action="append",
        default=[],
        help="enrol again a DID that was purged (withdrawn or deleted); without it, a user file "
        "that lists a purged DID has that line skipped with a warning",
    )
    parser.add_argument(
        "--purge-account-statuses",
        type=_statuses,
        default=PURGE_ACCOUNT_STATUSES,
        metavar="STATUS,...",
        help="the #account statuses of a population account that purge it at the next export, "
        f"unless it is reactivated first (default: {','.join(sorted(PURGE_ACCOUNT_STATUSES))}; "
        "`deactivated`, also the state of a PDS migration, and `suspended` are temporary: the "
        "account comes back with its data)",
    )
    parser.add_argument(
        "--flush-frames",
        type=int,
        default=5000,
        help="persist the cursor after at most this many frames (default: %(default)s)",
    )
    parser.add_argument(
        "--flush-seconds",
        type=float,
        default=2.0,
        help="... or after this many seconds, whichever comes first (default: %(default)s)",
    )
    parser.add_argument(
        "--inline-writes",
        action="store_true",
        help="write cache files in this process instead of a helper process beside it (one core "
        "instead of two; the helper roughly halves the time of a backlog in which most ops are kept)",
    )
    parser.add_argument(
        "--no-sync",
        action="store_true",
        help="skip syncfs() of the cache's filesystem before each cursor commit (faster; a power "
        "loss may lose a batch)",
    )
    parser.add_argument(
        "--allow-empty-population",
        action="store_true",
        help="run even when the study and in-network sets are both empty (it keeps nothing, and the "
        "cursor moves past every frame)",
    )
    return parser


_ACCOUNT_STATUSES = frozenset(  # the Account spec's
    {"takendown", "suspended", "deleted", "deactivated", "desynchronized", "throttled"}
)


def _statuses(text: str) -> frozenset[str]:
    """A comma-separated list of account statuses (the Account spec's), for argparse."""
    found = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(found - _ACCOUNT_STATUSES)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown account status {', '.join(unknown)} (known: {', '.join(sorted(_ACCOUNT_STATUSES))})"
        )
    return found


def _print_summary(summary: WriteSummary, seconds: float) -> None:
    total = sum(summary.frames.values())
    print(f"frames: {total} in {seconds:.2f}s ({total / seconds if seconds else 0:,.0f}/s)")
    for title, counts in (
        ("frames by type", summary.frames),
        ("ops", summary.ops),
        ("files written", summary.files),
        ("rejections", summary.rejections),
        ("account statuses", summary.accounts),
    ):
        print(f"{title}:" + ("" if counts else " none"))
        for name, count in sorted(counts.items()):
            print(f"  {name}: {count}")
    if summary.skipped_below_cursor:
        print(f"skipped at or below the stored cursor: {summary.skipped_below_cursor}")
    print(f"cursor: {summary.cursor}")


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.flush_frames < 1:
        parser.error("--flush-frames must be at least 1")
    for name in ("flush_seconds", "recv_timeout", "reconnect_delay", "progress_seconds"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.idle_exit is not None and args.idle_exit <= 0:
        parser.error("--idle-exit must be positive")
    if args.relay is not None and args.replay is not None:
        parser.error("--relay and --replay are two sources: give one")
    if args.relay is None:
        for option in ("live", "idle_exit", "record"):
            if getattr(args, option):
                parser.error(f"--{option.replace('_', '-')} applies to --relay only")
    if args.cursor is not None and args.cursor < 0:
        parser.error("--cursor must not be negative")
    if args.index_retention_days <= 0:
        parser.error("--index-retention-days must be positive")
    if args.backfill_concurrency < 1:
        parser.error("--backfill-concurrency must be at least 1")
    if args.health_max_age <= 0:
        parser.error("--health-max-age must be positive")
    if args.metrics is not None:
        from syncstream.write.metrics import parse_address  # noqa: PLC0415 (prometheus: on demand)

        try:
            parse_address(args.metrics)
        except ValueError as error:
            parser.error(f"--metrics: {error}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(args.quiet, args.log_format)
    _check(parser, args)
    replay = args.replay
    study, in_network = args.study_users, args.in_network_users
    if replay is None and args.relay is None:
        replay = str(_DATA / "sample_frames.bin.zst")
        study = study or str(_DATA / "sample_study_users.txt")
        in_network = in_network or str(_DATA / "sample_in_network_users.txt")
    if replay is not None and not Path(replay).is_file():
        print(f"error: replay file not found: {replay}", file=sys.stderr)
        return 2
    context = _open(args, study, in_network)
    if isinstance(context, int):
        return context
    return _run(args, context, replay, study, in_network)


def _open(args: argparse.Namespace, study: str | None, in_network: str | None) -> CacheWriteContext | int:
    """The write system, or the exit status of why there is none."""
    try:
        context = setup_cache_write_system(
            args.cache_dir,
            args.state,
            study_users=study,
            in_network_users=in_network,
            reenrol=args.reenrol,
            handlers=load_registry(args.handlers),
        )
    except (SyncstreamError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not (context.population.study or context.population.in_network) and not args.allow_empty_population:
        context.close()
        print(
            "error: the study and in-network sets are both empty, so nothing would be kept and the "
            "cursor would move past every frame; give --study-users FILE (and --in-network-users "
            "FILE), or --allow-empty-population",
            file=sys.stderr,
        )
        return 2
    return context


def _run(
    args: argparse.Namespace,
    context: CacheWriteContext,
    replay: str | None,
    study: str | None,
    in_network: str | None,
) -> int:
    set_process("writer-inline" if args.inline_writes else "writer")
    started = time.perf_counter()
    status = 0
    files = None
    metrics: MetricsServer | None = None
    backfill: BackgroundBackfill | None = None
    try:
        if not args.inline_writes:
            files = HelperWrites(context.cache_root, lock_fd=context.lock.fileno())
        writer = CacheWriter(
            context,
            flush_frames=args.flush_frames,
            flush_seconds=args.flush_seconds,
            durable=not args.no_sync,
            track_follows=args.track_follows,
            files=files,
            index_retention_days=args.index_retention_days,
            cursor_source=CURSOR if args.relay is None else relay_cursor(args.relay),
            purge_account_statuses=args.purge_account_statuses,
        )
        if args.metrics is not None:
            from syncstream.write.metrics import MetricsServer, parse_address  # noqa: PLC0415

            metrics = MetricsServer(writer, parse_address(args.metrics), max_age=args.health_max_age).start()
        if args.cursor is not None:
            writer.last_seq = args.cursor
        elif args.live:
            writer.last_seq = None
        if args.backfill:
            from syncstream.backfill.background import BackgroundBackfill  # noqa: PLC0415

            backfill = BackgroundBackfill(
                writer, plc_url=args.plc_url.rstrip("/"), concurrency=args.backfill_concurrency
            )
            backfill.enqueue(backfill.wanted())
            if metrics is not None:
                metrics.backfill_counts = lambda: {"done": backfill.done, "failed": backfill.failed,
                                                   "running": len(backfill.running)}  # fmt: skip
        if replay is not None:
            status = _replay(writer, replay, backfill)
        else:
            status = _relay(writer, args, study, in_network, metrics=metrics, backfill=backfill)
        summary = writer.summary()
        if files is not None:
            files.close()
    except RelayError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (CacheWriteError, HelperError, FailpointError) as error:
        print(f"error: {error}; the cursor stays at the last durable batch", file=sys.stderr)
        return 1
    finally:
        if files is not None:
            files.kill()  # a no-op once closed; else an abort drops only unconfirmed writes
        if backfill is not None:
            backfill.close()
        if metrics is not None:
            metrics.close()
        context.close()
    if status != 2:
        _print_summary(summary, time.perf_counter() - started)
        print(f"cache: {context.cache_root}\nstate: {os.path.abspath(args.state)}")
    return status


def _replay(writer: CacheWriter, replay: str, backfill: BackgroundBackfill | None = None) -> int:
    try:
        if backfill is None:
            writer.process_frames(iter_replay(replay))
        else:
            for count, frame in enumerate(iter_replay(replay)):
                writer.process_frame(frame)
                if count % 200 == 0:
                    backfill.poll()
            backfill.drain()
            writer.flush()
    except ReplayError as error:
        writer.flush()
        writer.frames["truncated"] = writer.frames.get("truncated", 0) + 1
        print(f"error: {replay}: {error}; every whole frame before it was processed", file=sys.stderr)
        return 1
    except (CacheWriteError, HelperError):
        raise
    except (OSError, zstandard.ZstdError) as error:
        writer.flush()
        print(f"error: cannot read {replay}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        writer.flush()
        return 130
    frames = sum(writer.frames.values())
    if frames and writer.frames.get("undecodable", 0) == frames:
        print(f"error: {replay}: none of its {frames} frames is a relay frame", file=sys.stderr)
        return 1
    return 0


def _relay(
    writer: CacheWriter,
    args: argparse.Namespace,
    study: str | None,
    in_network: str | None,
    *,
    metrics: MetricsServer | None,
    backfill: BackgroundBackfill | None,
) -> int:
    # The SDK takes a second to import; a replay does not need it.
    from syncstream.write.live import LiveOptions, LiveRunner  # noqa: PLC0415

    def reload_users() -> None:
        load_users(writer.context.state, "study", study)
        load_users(writer.context.state, "in_network", in_network)

    recv_timeout = args.recv_timeout if args.recv_timeout is not None else 30.0
    if args.recv_timeout is None and args.idle_exit is not None and recv_timeout >= args.idle_exit:
        # A stalled socket must get its reconnect before the writer calls the stream idle.
        recv_timeout = args.idle_exit / 2
        logging.getLogger("syncstream.write").info(
            "receive timeout lowered to %.1fs, half of --idle-exit", recv_timeout
        )
    options = LiveOptions(
        relay=args.relay,
        recv_timeout=recv_timeout,
        idle_exit=args.idle_exit,
        reconnect_delay=args.reconnect_delay,
        progress_seconds=args.progress_seconds,
    )
    with contextlib.ExitStack() as stack:
        record = stack.enter_context(open(args.record, "ab")) if args.record else None
        if record is not None:
            writer.on_flush = record.flush
        runner = LiveRunner(
            writer,
            options,
            record=record,
            reload_users=reload_users,
            tick=None if backfill is None else backfill.poll,
        )
        if metrics is not None:
            metrics.reconnect_counts = runner.reconnects.copy
        if backfill is not None:
            runner.extra_progress = lambda: {"backfills": {"done": backfill.done, "failed": backfill.failed,
                                                           "running": len(backfill.running)}}  # fmt: skip
        runner.run()
    if runner.unparsed:
        writer.frames["unparsed"] = writer.frames.get("unparsed", 0) + runner.unparsed
    if runner.idle_exited and runner.received == 0:
        print(
            f"error: no frame arrived from {args.relay} in {args.idle_exit:g}s ({runner.connections} "
            "connection attempts; their errors are logged above)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
