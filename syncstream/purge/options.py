"""The options of ``python -m syncstream.purge``: ``PurgeOptions`` and the parser that builds them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from syncstream.config import parse_options
from syncstream.errors import ConfigError
from syncstream.options import (
    WRITER_TIMEOUT,
    StoreOptions,
    add_did_option,
    add_store_options,
    positive_float,
)

__all__ = ["PurgeOptions", "parse", "parser"]


class PurgeOptions(StoreOptions, frozen=True, kw_only=True):
    """Every option of the purge, with its default; ``ConfigError`` when there is nothing to do."""

    POSITIVE = ("writer_timeout",)

    out: str | None = None  # one of the outputs the store exported to (a check); None: every one
    did: tuple[str, ...] = ()
    dids_file: str | None = None
    writer_timeout: float = WRITER_TIMEOUT
    list: bool = False  # print the purges recorded, and exit
    forget_output: tuple[str, ...] = ()  # outputs deleted on purpose: out of the catalog first

    def check(self) -> None:
        super().check()
        if not self.did and self.dids_file is None and not self.list and not self.forget_output:
            raise ConfigError(
                "give the accounts to purge: --did DID or --dids-file FILE (or --list, or --forget-output)"
            )


def parse(argv: Sequence[str] | None) -> PurgeOptions:
    """The command line's options; a usage error (exit 2) for a bad one."""
    return parse_options(PurgeOptions, parser(), argv)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncstream purge",
        description=(
            "Remove accounts from the study: from the population (for good: a user file that still "
            "lists one is skipped with a warning until `python -m syncstream.write --reenrol DID`), "
            "and, from the cache, the state, every output the store exported to, every snapshot, "
            "record file and backfill scratch it made, every row they authored "
            "and every row collected because of them (likes on, replies to, reposts and quotes of "
            "their posts, follows of them, their account events). Parquet files are rewritten without "
            "those rows. Exactly once and crash-safe: an interrupted purge is finished by the next "
            "purge or export. Safe beside the writer (it waits until the writer applies the new "
            "population) and the export (they take turns)."
        ),
        epilog=(
            "Exit status: 0 when the purge is done; 1 when it could not finish, for instance an "
            "output that cannot be reached (it is recorded, and the next purge or export finishes "
            "it); 2 for bad options or input, such as an --out the store never exported to "
            "(nothing is recorded)."
        ),
    )
    add_store_options(parser, state_help="the writer's SQLite state store")
    parser.add_argument(
        "--out",
        help="an output the store exported to, as a check that it is the one meant: refused (exit 2) "
        "if the store never exported there. Every output the store's catalog records is purged "
        "either way (default: every one, unnamed)",
    )
    add_did_option(parser, what="an account to purge")
    parser.add_argument("--dids-file", metavar="FILE", help="accounts to purge, one DID per line, # comments")
    parser.add_argument(
        "--writer-timeout",
        type=positive_float,
        default=WRITER_TIMEOUT,
        help="seconds to wait for a running writer to apply the new population (default: %(default)s)",
    )
    parser.add_argument(
        "--list", action="store_true", help="print the purges recorded in the state, and exit"
    )
    parser.add_argument(
        "--forget-output",
        action="append",
        default=[],
        metavar="DIR_OR_URI",
        help="an output deleted on purpose, which a purge would otherwise wait for (exit 1, "
        "unfinished): removed from the store's catalog, then any unfinished purge is finished "
        "without it (repeatable; one the store never exported to is exit 2)",
    )
    return parser
