"""What both commands share: the cache and state options, and logging to stderr."""

from __future__ import annotations

import argparse
import logging
import sys

__all__ = ["add_store_options", "setup_logging"]


def add_store_options(parser: argparse.ArgumentParser, *, state_help: str) -> None:
    parser.add_argument(
        "--cache-dir", default="syncstream-cache", help="root of the cache tree (default: %(default)s)"
    )
    parser.add_argument(
        "--state", default="syncstream-state.sqlite", help=f"{state_help} (default: %(default)s)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")


def setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
