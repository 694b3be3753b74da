"""The options of ``syncstream report`` and the parser that builds them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from syncstream.config import parse_options
from syncstream.options import OUT, STATE, LogOptions, add_handlers_option, add_log_options, add_out_option

__all__ = ["REPORT", "ReportOptions", "parse", "parser"]

REPORT = "syncstream-report"


class ReportOptions(LogOptions, frozen=True, kw_only=True):
    """The store and the tables the report reads, and the directory it writes."""

    state: str = STATE
    out: str = OUT
    to: str = REPORT
    handlers: str | None = None


def parse(argv: Sequence[str] | None) -> ReportOptions:
    """The command line's options; a usage error (exit 2) for a bad one."""
    return parse_options(ReportOptions, parser(), argv)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncstream report",
        description=(
            "Write DIR/index.html, a page with PNG plots beside it that reads offline: every table "
            "with its rows, rows per day per table, coverage, the population over time, "
            "verification outcomes and backfill progress. Reads the store and the tables only. "
            "Needs matplotlib (pip install 'syncstream[report]')."
        ),
        epilog="Exit status: 0 when written; 1 when it could not be; 2 for bad options, a --state "
        "that is missing or not a syncstream store, or matplotlib missing.",
    )
    parser.add_argument(
        "--state", default=STATE, help="the writer's SQLite state store (default: %(default)s)"
    )
    add_out_option(parser, what="the export's output")
    parser.add_argument(
        "--to", default=REPORT, metavar="DIR", help="where index.html and its plots go (default: %(default)s)"
    )
    add_handlers_option(parser)
    add_log_options(parser)
    return parser
