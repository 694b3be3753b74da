"""The options of ``syncstream status`` and the parser that builds them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from syncstream.config import parse_options
from syncstream.options import STATE, LogOptions, add_handlers_option, add_log_options

__all__ = ["StatusOptions", "parse", "parser"]


class StatusOptions(LogOptions, frozen=True, kw_only=True):
    """What ``status`` reads: the state store and, when given, the export's output."""

    state: str = STATE
    out: str | None = None  # None: only the outputs the store recorded
    handlers: str | None = None
    json: bool = False


def parse(argv: Sequence[str] | None) -> StatusOptions:
    """The command line's options; a usage error (exit 2) for a bad one."""
    return parse_options(StatusOptions, parser(), argv)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncstream status",
        description=(
            "The state store at a glance: the cursor and the lag behind the relay's time, the "
            "population, pending purges, backfills by status, the last export, coverage gaps, "
            "the handlers that wrote; with --out, each table's rows and files. Reads only."
        ),
        epilog="Exit status: 0 when shown; 2 for bad options, or a --state that is missing or not "
        "a syncstream store (nothing is created).",
    )
    parser.add_argument(
        "--state", default=STATE, help="the writer's SQLite state store (default: %(default)s)"
    )
    parser.add_argument(
        "--out",
        help="the export's output, a directory or a pyarrow.fs URI such as s3://bucket/prefix: "
        "show each table's rows and files (default: none)",
    )
    add_handlers_option(parser)
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (for monitoring) instead of text"
    )
    add_log_options(parser)
    return parser
