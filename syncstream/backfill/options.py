"""The options the backfill command and the writer's ``--backfill`` share, and the fetcher
they build: the PLC directory, the bounds of a fetch, politeness towards PDSes, endpoints."""

from __future__ import annotations

import argparse
import threading

from syncstream.backfill.fetch import Fetcher, FetchLimits, is_loopback_url
from syncstream.backfill.polite import HostGate
from syncstream.verify import DidDocuments

__all__ = ["add_fetch_options", "check_fetch_options", "make_fetcher"]


def _rate(text: str) -> tuple[int, float]:
    calls, _, seconds = text.partition("/")
    try:
        parsed = int(calls), float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not CALLS/SECONDS: {text!r}") from None
    if parsed[0] < 1 or parsed[1] <= 0:
        raise argparse.ArgumentTypeError(f"not CALLS/SECONDS with both positive: {text!r}")
    return parsed


def add_fetch_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """``prefix``: "backfill-" for the writer, whose other options are the stream's."""
    limits = FetchLimits()
    parser.add_argument(
        f"--{prefix}timeout", dest="fetch_timeout", type=float, default=limits.timeout, metavar="SECONDS",
        help="connecting, and silence within a transfer, before a fetch is cut (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        f"--{prefix}deadline", dest="fetch_deadline", type=float, default=limits.deadline, metavar="SECONDS",
        help="a whole getRepo, waits for the host included (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        f"--{prefix}min-rate", dest="fetch_min_rate", type=float, default=limits.min_rate, metavar="BYTES",
        help=f"bytes/s a transfer must average after its first {limits.grace:g}s, or it is cut "
        "(a PDS that trickles) (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--pds-concurrency", type=int, default=4, metavar="N",
        help="getRepo calls at once to one PDS host (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--pds-rate", type=_rate, default=(3000, 300.0), metavar="CALLS/SECONDS",
        help="getRepo calls per period to one PDS host, a token bucket; 429 answers and "
        "RateLimit-* headers pause the host besides (default: 3000/300)",
    )  # fmt: skip
    parser.add_argument(
        "--pds-endpoints", choices=("auto", "public", "any"), default="auto",
        help="PDS endpoints a DID document may name: public (https on a public host, port 443), "
        "any, or auto: public, unless --plc-url is on loopback (a rehearsal) (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        f"--{prefix}scratch-dir" if prefix else "--scratch-dir", dest="scratch_dir", metavar="DIR",
        help="where repositories are streamed to disk and indexed while they are walked "
        "(default: the system's temporary directory)",
    )  # fmt: skip


def check_fetch_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.fetch_timeout <= 0 or args.fetch_deadline <= 0 or args.fetch_min_rate < 0:
        parser.error("the fetch timeout and deadline must be positive, the minimum rate not negative")
    if args.pds_concurrency < 1:
        parser.error("--pds-concurrency must be at least 1")


def make_fetcher(args: argparse.Namespace, plc_url: str) -> Fetcher:
    """Built in the main thread, before any thread starts: it imports the SDK's resolver."""
    endpoints = args.pds_endpoints
    if endpoints == "auto":
        endpoints = "any" if is_loopback_url(plc_url) else "public"
    calls, period = args.pds_rate
    return Fetcher(
        DidDocuments(plc_url, timeout=min(args.fetch_timeout, 10.0)),
        limits=FetchLimits(
            deadline=args.fetch_deadline, min_rate=args.fetch_min_rate, timeout=args.fetch_timeout
        ),
        gate=HostGate(concurrency=args.pds_concurrency, calls=calls, period=period),
        endpoints=endpoints,
        stop=threading.Event(),
    )
