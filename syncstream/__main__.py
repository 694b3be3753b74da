"""``syncstream COMMAND [OPTIONS]`` (or ``python -m syncstream COMMAND``): every command under one
name, beside ``python -m syncstream.COMMAND``.

Each command's module is imported only when it is asked for, so ``syncstream --help`` answers
without loading pyarrow, delta-rs or the atproto SDK.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from syncstream.cli import fail, run

# command -> (the module whose main(argv) -> int it runs, its line in --help)
COMMANDS: Mapping[str, tuple[str, str]] = {
    "init": ("syncstream.init.__main__", "create the state store and its population, before any writer"),
    "write": ("syncstream.write.__main__", "phase 1: a replay or the live relay into the cache tree"),
    "export": ("syncstream.export.__main__", "phase 2: the cache into date-partitioned Delta tables"),
    "purge": ("syncstream.purge.__main__", "remove withdrawn accounts from population, cache and tables"),
    "backfill": ("syncstream.backfill.__main__", "study users' history, from their PDS and verified"),
    "compact": ("syncstream.lake.compact", "rewrite closed partitions into few files, checkpoint, vacuum"),
    "snapshot": ("syncstream.lake.snapshot", "a citable plain-Parquet copy of every table, with a manifest"),
    "status": (
        "syncstream.status.__main__",
        "the store and its tables at a glance: cursor, lag, population",
    ),
    "report": ("syncstream.report.__main__", "an HTML page with plots of what the store collected"),
    "relay": ("syncstream.servers.relay", "rehearsal: serve a replay file as a relay's firehose"),
    "pds": ("syncstream.servers.pds", "rehearsal: serve repositories as a PDS and DID documents as a PLC"),
}

USAGE = (
    "usage: syncstream COMMAND [OPTIONS]   (syncstream COMMAND --help for a command's options; "
    "syncstream --version)"
)


def _help() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join([USAGE, "", "commands:", *lines])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command ``argv[0]`` with the rest of ``argv``; 2 for a missing or unknown one."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(_help(), file=sys.stderr)
        return 2
    name, rest = args[0], args[1:]
    if name in ("-h", "--help"):
        print(_help())
        return 0
    if name in ("-V", "--version"):
        from syncstream import __version__  # noqa: PLC0415

        print(f"syncstream {__version__}")
        return 0
    if name not in COMMANDS:
        fail(f"unknown command {name!r}: choose from {', '.join(COMMANDS)} (syncstream --help)")
        return 2
    module, _ = COMMANDS[name]
    status: int = importlib.import_module(module).main(rest)
    return status


def script() -> NoReturn:
    """The ``syncstream`` console script."""
    run(main)


if __name__ == "__main__":
    script()
