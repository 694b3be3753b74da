"""The options of ``python -m syncstream.write``, and their checks."""

from __future__ import annotations

import argparse

from syncstream.cli import add_store_options
from syncstream.write.writer import PURGE_ACCOUNT_STATUSES, HoldLimits

__all__ = ["check", "parser"]


def parser() -> argparse.ArgumentParser:
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
        help="seconds between progress lines on stderr, for a replay or a relay (default: %(default)s)",
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
    _backfill_options(parser)
    parser.add_argument(
        "--verify",
        choices=("none", "study", "population"),
        help="check the signature of every #commit and #sync of study users (study) or of the "
        "whole population (population) against the author's DID document key, from --plc-url; "
        "a commit that fails is counted and not written, one whose key cannot be had is written "
        "with verified null (default: study with --relay, none with --replay)",
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


def _backfill_options(parser: argparse.ArgumentParser) -> None:
    from syncstream.backfill.options import add_fetch_options  # noqa: PLC0415

    add_fetch_options(parser, prefix="backfill-")
    limits = HoldLimits()
    for name, kind, default, what in (
        ("commits", int, limits.commits, "live commits"),
        ("bytes", int, limits.bytes, "bytes of live frames"),
        ("seconds", float, limits.seconds, "seconds"),
    ):
        parser.add_argument(
            f"--backfill-hold-{name}", type=kind, default=default, metavar=name.upper(),
            help=f"--backfill: at most this many {what} of a DID held while its repository is "
            "backfilled; past it the backfill fails (retried later) and they are written as live "
            "(default: %(default)s)",
        )  # fmt: skip


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
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
    if min(args.backfill_hold_commits, args.backfill_hold_bytes, args.backfill_hold_seconds) <= 0:
        parser.error("the --backfill-hold-* bounds must be positive")
    from syncstream.backfill.options import check_fetch_options  # noqa: PLC0415

    check_fetch_options(parser, args)
    if args.health_max_age <= 0:
        parser.error("--health-max-age must be positive")
    if args.metrics is not None:
        from syncstream.write.metrics import parse_address  # noqa: PLC0415 (prometheus: on demand)

        try:
            parse_address(args.metrics)
        except ValueError as error:
            parser.error(f"--metrics: {error}")
