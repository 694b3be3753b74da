"""The options of ``python -m syncstream.backfill`` (``BackfillOptions`` and their parser), and
the fetcher a backfill uses, built from its ``FetchOptions`` and the PLC directory: the backfill
command's and the writer's with ``--backfill``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import msgspec

from syncstream.backfill.fetch import Fetcher, FetchLimits, is_loopback_url
from syncstream.backfill.polite import HostGate
from syncstream.config import parse_options
from syncstream.options import (
    PLC_URL,
    FetchOptions,
    StoreOptions,
    add_did_option,
    add_fetch_options,
    add_plc_option,
    add_store_options,
    add_users_options,
    positive_int,
)
from syncstream.signals import StopFlag
from syncstream.verify import DidDocuments

__all__ = ["BackfillOptions", "make_fetcher", "parse", "parser"]


class BackfillOptions(StoreOptions, frozen=True, kw_only=True):
    """Every option of the backfill command, with its default."""

    POSITIVE = ("concurrency",)

    study_users: str | None = None  # a file that replaces the study users
    in_network_users: str | None = None
    did: tuple[str, ...] = ()  # these study users; none: every one not yet done
    plc_url: str = PLC_URL
    concurrency: int = 4  # repositories fetched at once
    fetch: FetchOptions = msgspec.field(default_factory=FetchOptions)
    force: bool = False  # backfill DIDs already done again


def parse(argv: Sequence[str] | None) -> BackfillOptions:
    """The command line's options; a usage error (exit 2) for a bad one."""
    return parse_options(BackfillOptions, parser(), argv)


def parser() -> argparse.ArgumentParser:
    defaults = BackfillOptions()
    parser = argparse.ArgumentParser(
        prog="syncstream backfill",
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
            "Exit status: 0 when every DID was backfilled (or skipped as done), or when SIGTERM, "
            "SIGINT or SIGHUP stopped the run (what was under way is abandoned and done again by "
            "the next run); 1 when one failed (each is listed with its reason, recorded, and "
            "retried by the next run), or when none was backfilled because those not done all "
            "failed before and wait for their retry; 2 for bad options or input (a --did that is "
            "not a study user), or a cache held by a running writer."
        ),
    )
    add_store_options(parser, state_help="the writer's SQLite state store")
    add_users_options(parser, default="the stored set")
    add_did_option(parser, what="backfill this study user")
    add_plc_option(parser, what="the PLC directory")
    parser.add_argument(
        "--concurrency", type=positive_int, default=defaults.concurrency,
        help="repositories fetched at once (default: %(default)s)",
    )  # fmt: skip
    add_fetch_options(parser)
    parser.add_argument("--force", action="store_true", help="backfill DIDs already done again")
    return parser


def make_fetcher(options: FetchOptions, plc_url: str, *, stop: StopFlag | None = None) -> Fetcher:
    """Built in the main thread, before any thread starts: it imports the SDK's resolver.
    ``stop`` abandons its fetches (the backfill command's stop signals)."""
    endpoints = options.pds_endpoints
    if endpoints == "auto":
        endpoints = "any" if is_loopback_url(plc_url) else "public"
    calls, period = options.pds_rate
    return Fetcher(
        DidDocuments(plc_url, timeout=min(options.fetch_timeout, 10.0)),
        limits=FetchLimits(
            deadline=options.fetch_deadline, min_rate=options.fetch_min_rate, timeout=options.fetch_timeout
        ),
        gate=HostGate(concurrency=options.pds_concurrency, calls=calls, period=period),
        endpoints=endpoints,
        stop=StopFlag() if stop is None else stop,
    )
