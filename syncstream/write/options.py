"""The options of ``python -m syncstream.write``: ``WriteOptions``, their checks, and the parser
that builds them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import msgspec

from syncstream.config import parse_options
from syncstream.errors import ConfigError
from syncstream.options import (
    PLC_URL,
    FetchOptions,
    StoreOptions,
    add_fetch_options,
    add_plc_option,
    add_store_options,
    add_users_options,
    non_negative_int,
    positive_float,
    positive_int,
)
from syncstream.write.accounts import PURGE_ACCOUNT_STATUSES
from syncstream.write.holds import HoldLimits

__all__ = ["WriteOptions", "parse", "parser"]

_HOLD = HoldLimits()


# Defaults written once: WriteOptions holds them for the command line, and the writer and the
# live runner take the same ones when the library builds them directly.
FLUSH_FRAMES = 5000  # frames between flushes ...
FLUSH_SECONDS = 2.0  # ... or seconds, whichever comes first
INDEX_RETENTION_DAYS = 30.0
RECV_TIMEOUT = 30.0  # a socket silent this long is stalled: reconnect
RECONNECT_DELAY = 1.0  # the backoff's base
PROGRESS_SECONDS = 10.0


class WriteOptions(StoreOptions, frozen=True, kw_only=True):
    """Every option of the writer, with its default; ``ConfigError`` at construction for a
    value out of range or options that cannot go together."""

    POSITIVE = (
        "idle_exit", "recv_timeout", "reconnect_delay", "progress_seconds", "backfill_concurrency",
        "backfill_hold_commits", "backfill_hold_bytes", "backfill_hold_seconds", "health_max_age",
        "index_retention_days", "flush_frames", "flush_seconds",
    )  # fmt: skip
    NON_NEGATIVE = ("cursor",)

    study_users: str | None = None  # None: the bundled sample without --replay, else the stored set
    in_network_users: str | None = None
    replay: str | None = None  # None without a relay: the bundled sample
    relay: str | None = None  # a relay's URL
    cursor: int | None = None  # start after this seq instead of the stored cursor
    live: bool = False  # relay: start from now
    idle_exit: float | None = None  # relay: exit 0 after this many seconds without a frame
    recv_timeout: float | None = None  # None: RECV_TIMEOUT, or half of idle_exit when that is shorter
    reconnect_delay: float = RECONNECT_DELAY
    progress_seconds: float = PROGRESS_SECONDS
    record: str | None = None  # relay: append every received frame to this replay file
    track_follows: bool = False
    backfill: bool = False
    plc_url: str = PLC_URL
    backfill_concurrency: int = 4
    fetch: FetchOptions = msgspec.field(default_factory=FetchOptions)
    backfill_hold_commits: int = _HOLD.commits
    backfill_hold_bytes: int = _HOLD.bytes
    backfill_hold_seconds: float = _HOLD.seconds
    verify: str | None = None  # none, study or population; None: study with a relay, else none
    metrics: str | None = None  # HOST:PORT
    health_max_age: float = 60.0
    index_retention_days: float = INDEX_RETENTION_DAYS
    reenrol: tuple[str, ...] = ()
    purge_account_statuses: frozenset[str] = PURGE_ACCOUNT_STATUSES
    flush_frames: int = FLUSH_FRAMES
    flush_seconds: float = FLUSH_SECONDS
    inline_writes: bool = False
    no_sync: bool = False
    allow_empty_population: bool = False

    def check(self) -> None:
        super().check()
        if self.relay is not None and self.replay is not None:
            raise ConfigError("--relay and --replay are two sources: give one")
        if self.relay is None:
            for option in ("live", "idle_exit", "record"):
                if getattr(self, option):
                    raise ConfigError(f"--{option.replace('_', '-')} applies to --relay only")
        if self.cursor is not None and self.live:
            raise ConfigError("--cursor and --live are two starts: give one")
        if self.verify not in (None, "none", "study", "population"):
            raise ConfigError(f"--verify must be none, study or population, not {self.verify!r}")
        unknown = sorted(self.purge_account_statuses - ACCOUNT_STATUSES)
        if unknown:
            raise ConfigError(
                f"unknown account status {', '.join(unknown)} (known: {', '.join(sorted(ACCOUNT_STATUSES))})"
            )
        if self.metrics is not None:
            from syncstream.write.metrics import parse_address  # noqa: PLC0415 (prometheus: on demand)

            try:
                parse_address(self.metrics)
            except ValueError as error:
                raise ConfigError(f"--metrics: {error}") from None


def parse(argv: Sequence[str] | None) -> WriteOptions:
    """The command line's options; a usage error (exit 2) for a bad one."""
    return parse_options(WriteOptions, parser(), argv)


def parser() -> argparse.ArgumentParser:
    defaults = WriteOptions()
    parser = argparse.ArgumentParser(
        prog="syncstream write",
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
            "that is not a syncstream store, a symbolic link inside the cache, a store held by "
            "another writer, a cache that is not the store's (a cache moves whole, with mv)."
        ),
    )
    add_store_options(parser, state_help="SQLite state store: users, cursor, cached-URI index")
    add_users_options(parser, default="the bundled sample when --replay is not given, else the stored set")
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
        "--cursor",
        type=non_negative_int,
        help="start after this seq instead of the stored cursor (replay and relay)",
    )
    where.add_argument(
        "--live", action="store_true", help="relay: start from now, ignoring the stored cursor"
    )
    parser.add_argument(
        "--idle-exit",
        type=positive_float,
        metavar="SECONDS",
        help="relay: exit 0 once no frame has arrived for this long (default: run until signalled)",
    )
    parser.add_argument(
        "--recv-timeout",
        type=positive_float,
        metavar="SECONDS",
        help=f"relay: a socket silent this long is stalled and is reconnected (default: {RECV_TIMEOUT:g}, "
        "or half of --idle-exit when that is shorter)",
    )
    parser.add_argument(
        "--reconnect-delay",
        type=positive_float,
        default=defaults.reconnect_delay,
        metavar="SECONDS",
        help="relay: base of the exponential reconnect backoff, with jitter (default: %(default)s)",
    )
    parser.add_argument(
        "--progress-seconds",
        type=positive_float,
        default=defaults.progress_seconds,
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
    add_plc_option(parser, what="--backfill and --verify: the PLC directory")
    parser.add_argument(
        "--backfill-concurrency",
        type=positive_int,
        default=defaults.backfill_concurrency,
        help="--backfill: repositories fetched at once (default: %(default)s)",
    )
    add_fetch_options(parser, prefix="backfill-")
    for name, kind, what in (
        ("commits", positive_int, "live commits"),
        ("bytes", positive_int, "bytes of live frames"),
        ("seconds", positive_float, "seconds"),
    ):
        parser.add_argument(
            f"--backfill-hold-{name}", type=kind, default=getattr(defaults, f"backfill_hold_{name}"),
            metavar=name.upper(),
            help=f"--backfill: at most this many {what} of a DID held while its repository is "
            "backfilled; past it the backfill fails (retried later) and they are written as live "
            "(default: %(default)s)",
        )  # fmt: skip
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
        type=positive_float,
        default=defaults.health_max_age,
        help="seconds without a frame before /healthz answers 503 (default: %(default)s)",
    )
    parser.add_argument(
        "--index-retention-days",
        type=positive_float,
        default=defaults.index_retention_days,
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
        default=defaults.purge_account_statuses,
        metavar="STATUS,...",
        help="the #account statuses of a population account that purge it at the next export, "
        f"unless it is reactivated first (default: {','.join(sorted(defaults.purge_account_statuses))}; "
        "`deactivated`, also the state of a PDS migration, and `suspended` are temporary: the "
        "account comes back with its data)",
    )
    parser.add_argument(
        "--flush-frames",
        type=positive_int,
        default=defaults.flush_frames,
        help="persist the cursor after at most this many frames (default: %(default)s)",
    )
    parser.add_argument(
        "--flush-seconds",
        type=positive_float,
        default=defaults.flush_seconds,
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


ACCOUNT_STATUSES = frozenset(  # the Account spec's
    {"takendown", "suspended", "deleted", "deactivated", "desynchronized", "throttled"}
)


def _statuses(text: str) -> frozenset[str]:
    """A comma-separated list of account statuses (the Account spec's), for argparse."""
    found = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(found - ACCOUNT_STATUSES)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown account status {', '.join(unknown)} (known: {', '.join(sorted(ACCOUNT_STATUSES))})"
        )
    return found
