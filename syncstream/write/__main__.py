"""``python -m syncstream.write``: the cache-write phase, from a replay file or a live relay."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import zstandard

from syncstream.cli import environment_problem, escape, fail, load_registry, run, setup_logging
from syncstream.errors import (
    CacheWriteError,
    FailpointError,
    HelperError,
    RelayError,
    ReplayError,
    SyncstreamError,
)
from syncstream.failpoints import set_process
from syncstream.firehose.replay import iter_replay
from syncstream.preflight import load_users
from syncstream.signals import StopRequest, Stops
from syncstream.store import CURSOR, UserKind, relay_cursor
from syncstream.write.context import CacheWriteContext, setup_cache_write_system
from syncstream.write.holds import HoldLimits
from syncstream.write.options import RECV_TIMEOUT, WriteOptions, parse
from syncstream.write.progress import Progress
from syncstream.write.writer import CacheWriter, WriteSummary
from syncstream.write.writes import HelperWrites

if TYPE_CHECKING:
    from prometheus_client import Histogram

    from syncstream.write.authentic import StreamVerifier
    from syncstream.write.backfill import BackgroundBackfill
    from syncstream.write.live import LiveRunner
    from syncstream.write.metrics import MetricsServer

__all__ = ["main"]

_DATA = Path(__file__).resolve().parent.parent / "data"


def _print_summary(summary: WriteSummary, seconds: float, reconnects: dict[str, int]) -> None:
    total = sum(summary.frames.values())
    print(f"frames: {total} in {seconds:.2f}s ({total / seconds if seconds else 0:,.0f}/s)")
    for title, counts in (
        ("frames by type", summary.frames),
        ("ops", summary.ops),
        ("files written", summary.files),
        ("rejections", summary.rejections),
        ("account statuses", summary.accounts),
        *((("verification", summary.verification),) if summary.verification else ()),
        *((("reconnects", reconnects),) if reconnects else ()),
    ):
        print(f"{title}:" + ("" if counts else " none"))
        for name, count in sorted(counts.items()):
            print(f"  {escape(name)}: {count}")
    if summary.skipped_below_cursor:
        print(f"skipped at or below the stored cursor: {summary.skipped_below_cursor}")
    print(f"cursor: {summary.cursor}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    setup_logging(args.quiet, args.log_format)
    # Caught before the state and the cache are opened: a stop in the writer's first second
    # (the SDK's import) is as clean as one later.
    hangup = "re-reading the user files" if args.relay is not None else "ignored: a replay re-reads no files"
    with Stops("flushing, storing the cursor and exiting", hangup=hangup) as stops:
        return _main(args, stops)


def _main(args: WriteOptions, stops: Stops) -> int:
    if (problem := environment_problem()) is not None:
        fail(problem, event="bad_environment")
        return 2
    replay = args.replay
    study, in_network = args.study_users, args.in_network_users
    if replay is None and args.relay is None:
        replay = str(_DATA / "sample_frames.bin.zst")
        study = study or str(_DATA / "sample_study_users.txt")
        in_network = in_network or str(_DATA / "sample_in_network_users.txt")
    if replay is not None and not Path(replay).is_file():
        fail(f"replay file not found: {replay}", event="replay_not_found")
        return 2
    context = _open(args, study, in_network)
    if isinstance(context, int):
        return context
    return _run(args, context, replay, study, in_network, stops=stops)


def _open(args: WriteOptions, study: str | None, in_network: str | None) -> CacheWriteContext | int:
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
        fail(str(error), event="writer_not_started")
        return 2
    if not (context.population.study or context.population.in_network) and not args.allow_empty_population:
        context.close()
        fail(
            "the study and in-network sets are both empty, so nothing would be kept and the "
            "cursor would move past every frame; give --study-users FILE (and --in-network-users "
            "FILE), or --allow-empty-population",
            event="empty_population",
        )
        return 2
    return context


def _run(
    args: WriteOptions,
    context: CacheWriteContext,
    replay: str | None,
    study: str | None,
    in_network: str | None,
    *,
    stops: Stops,
) -> int:
    set_process("writer-inline" if args.inline_writes else "writer")
    started = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(context)
            files = None
            if not args.inline_writes:
                files = HelperWrites(context.cache_root, lock_fd=context.lock.fileno())
                stack.callback(files.kill)  # a no-op once closed; else an abort drops only unconfirmed writes
            record = None
            if args.record:  # a copy of every frame: the store knows it before the first is in it
                context.state.catalog.record_record_file(args.record, time.time())
                record = stack.enter_context(open(args.record, "ab"))
            flushes = _flush_histogram(args)
            writer = CacheWriter(
                context,
                flush_frames=args.flush_frames,
                flush_seconds=args.flush_seconds,
                durable=not args.no_sync,
                track_follows=args.track_follows,
                on_flush=None if record is None else record.flush,
                files=files,
                index_retention_days=args.index_retention_days,
                cursor_source=CURSOR if args.relay is None else relay_cursor(args.relay),
                resume=args.cursor if args.cursor is not None else "live" if args.live else "cursor",
                purge_account_statuses=args.purge_account_statuses,
                hold_limits=HoldLimits(
                    commits=args.backfill_hold_commits,
                    bytes=args.backfill_hold_bytes,
                    seconds=args.backfill_hold_seconds,
                ),
                verifier=_verifier(args),
                flush_observers=() if flushes is None else (flushes.observe,),
            )
            backfill = None
            if args.backfill:
                backfill = _background(writer, args)
                stack.callback(backfill.close)
            runner = None
            if args.relay is not None:
                runner = _runner(
                    writer, args, study, in_network, record=record, backfill=backfill, stops=stops
                )
            if args.metrics is not None:
                stack.enter_context(
                    _metrics(writer, args.metrics, max_age=args.health_max_age, flushes=flushes,
                             runner=runner, backfill=backfill)
                )  # fmt: skip
            if runner is not None:
                status = _relay(runner, args)
            else:
                assert replay is not None  # no relay: a replay, the sample's by default
                progress = Progress(writer, args.progress_seconds)
                status = _replay(writer, replay, progress, stops.flag, backfill)
            if backfill is not None:
                backfill.stop()  # what was held is written as live while the writer still can
                writer.flush()
            summary = writer.summary()
            if files is not None:
                files.close()
    except RelayError as error:
        fail(str(error), event="relay_refused")
        return 1
    except (CacheWriteError, HelperError, FailpointError) as error:
        fail(f"{error}; the cursor stays at the last durable batch", event="writer_stopped")
        return 1
    if status != 2:
        _print_summary(summary, time.perf_counter() - started, {} if runner is None else runner.reconnects)
        print(f"cache: {context.cache_root}\nstate: {os.path.abspath(args.state)}")
    return status


def _verifier(args: WriteOptions) -> StreamVerifier | None:
    scope = args.verify or ("study" if args.relay is not None else "none")
    if scope == "none":
        return None
    from syncstream.verify import DidDocuments  # noqa: PLC0415
    from syncstream.write.authentic import StreamVerifier  # noqa: PLC0415

    return StreamVerifier(DidDocuments(args.plc_url.rstrip("/"), timeout=3.0), scope)


def _flush_histogram(args: WriteOptions) -> Histogram | None:
    if args.metrics is None:
        return None
    from syncstream.write.metrics import flush_histogram  # noqa: PLC0415

    return flush_histogram()


def _metrics(
    writer: CacheWriter,
    address: str,
    *,
    max_age: float,
    flushes: Histogram | None,
    runner: LiveRunner | None,
    backfill: BackgroundBackfill | None,
) -> MetricsServer:
    from syncstream.write.metrics import MetricsServer, parse_address  # noqa: PLC0415

    return MetricsServer(
        writer,
        parse_address(address),
        max_age=max_age,
        flushes=flushes,
        reconnects=dict if runner is None else runner.reconnect_counts,
        backfills=dict if backfill is None else backfill.counts,
        pds=dict if backfill is None else backfill.fetcher.gate.stats,
    )


def _background(writer: CacheWriter, args: WriteOptions) -> BackgroundBackfill:
    from syncstream.backfill.options import make_fetcher  # noqa: PLC0415
    from syncstream.write.backfill import BackgroundBackfill  # noqa: PLC0415

    if args.relay is not None:  # the SDK's firehose, imported before any backfill thread starts
        import syncstream.write.live  # noqa: F401, PLC0415
    fetcher = make_fetcher(args.fetch, args.plc_url.rstrip("/"))
    backfill = BackgroundBackfill(
        writer, fetcher, concurrency=args.backfill_concurrency, scratch=args.fetch.scratch_dir
    )
    backfill.enqueue(backfill.wanted())
    return backfill


def _replay(
    writer: CacheWriter,
    replay: str,
    progress: Progress,
    stop: StopRequest,
    backfill: BackgroundBackfill | None = None,
) -> int:
    """The replay's frames into the cache, until its end or a stop (the frame under way
    finished: a stop is exit 0, as the cursor covers what was written)."""
    try:
        for count, frame in enumerate(iter_replay(replay)):
            if stop.is_set():
                writer.flush()
                return 0
            writer.process_frame(frame)
            progress.tick()
            if backfill is not None and count % 200 == 0:
                backfill.poll()
        if backfill is not None:
            backfill.drain()
        writer.flush()
    except ReplayError as error:
        writer.flush()
        writer.count_frames("truncated")
        fail(f"{replay}: {error}; every whole frame before it was processed", event="replay_truncated")
        return 1
    except (CacheWriteError, HelperError):
        raise
    except (OSError, zstandard.ZstdError) as error:
        writer.flush()
        fail(f"cannot read {replay}: {error}", event="replay_unreadable")
        return 2
    frames = sum(writer.frames.values())
    # Frames skipped at or below the stored cursor were relay frames: a rerun of finished work.
    if frames and writer.frames.get("undecodable", 0) == frames and not writer.skipped:
        fail(f"{replay}: none of its {frames} frames is a relay frame", event="not_a_replay")
        return 1
    return 0


def _runner(
    writer: CacheWriter,
    args: WriteOptions,
    study: str | None,
    in_network: str | None,
    *,
    record: BinaryIO | None,
    backfill: BackgroundBackfill | None,
    stops: Stops,
) -> LiveRunner:
    # The SDK takes a second to import; a replay does not need it.
    from syncstream.write.live import LiveOptions, LiveRunner  # noqa: PLC0415

    def reload_users() -> None:
        load_users(writer.context.state, UserKind.STUDY, study)
        load_users(writer.context.state, UserKind.IN_NETWORK, in_network)

    assert args.relay is not None  # called when there is no replay: there is a relay
    recv_timeout = args.recv_timeout if args.recv_timeout is not None else RECV_TIMEOUT
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
    return LiveRunner(
        writer,
        options,
        record=record,
        reload_users=reload_users,
        tick=None if backfill is None else backfill.poll,
        extra_progress=None if backfill is None else lambda: {"backfills": backfill.counts()},
        stops=stops,
    )


def _relay(runner: LiveRunner, args: WriteOptions) -> int:
    runner.run()
    if runner.unparsed:
        runner.writer.count_frames("unparsed", runner.unparsed)
    if runner.idle_exited and runner.received == 0:
        fail(
            f"no frame arrived from {args.relay} in {args.idle_exit:g}s ({runner.connections} "
            "connection attempts; their errors are logged above)",
            event="no_frame",
        )
        return 1
    return 0


if __name__ == "__main__":
    run(main)
