"""The options of ``syncstream init`` and the parser that builds them. With ``--config``, the
``[init]`` table is read, and without one the ``[write]`` table's options that init shares
(the store, the cache, the user files): the writer's file makes the writer's store."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from syncstream.config import parse_options
from syncstream.options import StoreOptions, add_store_options, add_users_options

__all__ = ["InitOptions", "parse", "parser"]


class InitOptions(StoreOptions, frozen=True, kw_only=True):
    """The store, the cache, the registry and the population's files."""

    study_users: str | None = None
    in_network_users: str | None = None
    reenrol: tuple[str, ...] = ()
    allow_empty_population: bool = False


def parse(argv: Sequence[str] | None) -> InitOptions:
    """The command line's options; a usage error (exit 2) for a bad one."""
    return parse_options(InitOptions, parser(), argv, fallback="write")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncstream init",
        description=(
            "Create the state store and lay the cache tree, loading the study's population from "
            "its user files, before any writer runs: a backfill may then come first. On a store "
            "that exists it loads the user files given, as the writer does at its start."
        ),
        epilog=(
            "Exit status: 0 when the store is ready; 2 for bad options or input (a user file with "
            "an invalid DID, an empty population without --allow-empty-population, a state file "
            "that is not a syncstream store, a cache held by a running writer)."
        ),
    )
    add_store_options(parser, state_help="the SQLite state store to create")
    add_users_options(parser, default="the stored set (none, in a new store)")
    parser.add_argument(
        "--reenrol",
        metavar="DID",
        action="append",
        default=[],
        help="enrol again a DID that was purged (repeatable), as the writer's --reenrol",
    )
    parser.add_argument(
        "--allow-empty-population",
        action="store_true",
        help="create the store even with no study and no in-network user",
    )
    return parser
