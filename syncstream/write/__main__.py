"""``python -m syncstream.write``: the cache-write phase from a replay file."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import zstandard

from syncstream.context import setup_cache_write_system
from syncstream.errors import SyncstreamError
from syncstream.write.sources import ReplayError, iter_replay
from syncstream.write.writer import CacheWriter, WriteSummary

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
            "./syncstream-cache with state in ./syncstream-state.sqlite."
        ),
    )
    parser.add_argument(
        "--cache-dir", default="syncstream-cache", help="root of the cache tree (default: %(default)s)"
    )
    parser.add_argument(
        "--state",
        default="syncstream-state.sqlite",
        help="SQLite state store: users, cursor, cached-URI index (default: %(default)s)",
    )
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
        "whole (default: the bundled sample of real frames)",
    )
    parser.add_argument(
        "--flush-frames",
        type=int,
        default=5000,
        help="persist the cursor after at most this many frames (default: %(default)s)",
    )
    parser.add_argument(
        "--no-sync",
        action="store_true",
        help="skip os.sync() before each cursor commit (faster; a power loss may lose a batch)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    return parser


def _print_summary(summary: WriteSummary, seconds: float) -> None:
    total = sum(summary.frames.values())
    print(f"frames: {total} in {seconds:.2f}s ({total / seconds if seconds else 0:,.0f}/s)")
    for title, counts in (
        ("frames by type", summary.frames),
        ("ops", summary.ops),
        ("files written", summary.files),
        ("rejections", summary.rejections),
    ):
        print(f"{title}:" + ("" if counts else " none"))
        for name, count in sorted(counts.items()):
            print(f"  {name}: {count}")
    if summary.skipped_below_cursor:
        print(f"skipped at or below the stored cursor: {summary.skipped_below_cursor}")
    print(f"cursor: {summary.cursor}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.flush_frames < 1:
        parser.error("--flush-frames must be at least 1")
    replay = args.replay
    study, in_network = args.study_users, args.in_network_users
    if replay is None:
        replay = str(_DATA / "sample_frames.bin.zst")
        study = study or str(_DATA / "sample_study_users.txt")
        in_network = in_network or str(_DATA / "sample_in_network_users.txt")
    if not Path(replay).is_file():
        print(f"error: replay file not found: {replay}", file=sys.stderr)
        return 2
    try:
        context = setup_cache_write_system(
            args.cache_dir, args.state, study_users=study, in_network_users=in_network
        )
    except (SyncstreamError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        writer = CacheWriter(context, flush_frames=args.flush_frames, durable=not args.no_sync)
        try:
            summary = writer.process_frames(iter_replay(replay))
        except ReplayError as error:
            writer.flush()
            summary = writer.summary()
            summary.frames["truncated"] = summary.frames.get("truncated", 0) + 1
            logging.getLogger("syncstream.write").warning("%s: %s", replay, error)
        except (OSError, zstandard.ZstdError) as error:
            print(f"error: cannot read {replay}: {error}", file=sys.stderr)
            return 2
    finally:
        context.close()
    _print_summary(summary, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
