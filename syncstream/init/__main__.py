"""``syncstream init``: the store and the cache, with the population, before the writer."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from syncstream.cli import fail, load_registry, run, setup_logging
from syncstream.errors import SyncstreamError
from syncstream.init.options import parse

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    setup_logging(args.quiet, args.log_format)
    from syncstream.write.context import setup_cache_write_system  # noqa: PLC0415

    existed = os.path.isfile(args.state)
    unnamed = args.study_users is None and args.in_network_users is None
    if not existed and unnamed and not args.allow_empty_population:
        fail(
            "give the population: --study-users FILE (and --in-network-users FILE), in the "
            "command line or the [init] or [write] table of --config; or --allow-empty-population",
            event="empty_population",
        )
        return 2
    try:
        context = setup_cache_write_system(
            args.cache_dir,
            args.state,
            study_users=args.study_users,
            in_network_users=args.in_network_users,
            reenrol=args.reenrol,
            handlers=load_registry(args.handlers),
        )
    except (SyncstreamError, OSError) as error:
        fail(str(error), event="init_refused")
        return 2
    with context:
        population = context.population
        if not (population.study or population.in_network) and not args.allow_empty_population:
            fail(
                "the study and in-network sets are both empty: give --study-users FILE (and "
                "--in-network-users FILE), or --allow-empty-population",
                event="empty_population",
            )
            context.close()
            if not existed:  # no store of nobody is left behind
                for suffix in ("", "-wal", "-shm", ".lock"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(args.state + suffix)
            return 2
        verb = "opened" if existed else "created"
        print(
            f"{verb} the state store {os.path.abspath(args.state)}: {len(population.study)} study "
            f"users, {len(population.in_network)} in-network users"
        )
        print(f"cache: {context.cache_root}")
    return 0


if __name__ == "__main__":
    run(main)
