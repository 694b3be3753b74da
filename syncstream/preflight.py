"""Checks every command runs at set-up, before it touches a file: the users a user file names,
and a registry that can read what the store says was written (``check_written``) and what the
cache tree holds (``check_cache_tree``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from returns.result import Failure

from syncstream.cache import stray_entries
from syncstream.errors import ConfigError
from syncstream.registry.handlers import Registry, datasets_of
from syncstream.store import StateStore, UserKind
from syncstream.users import read_user_lines

__all__ = ["WAY_ON", "check_cache_tree", "check_written", "load_users"]

log = logging.getLogger("syncstream.state")

WAY_ON = (
    "give the registry that wrote them (--handlers MODULE:NAME or SYNCSTREAM_HANDLERS; "
    "handlers= in the library)"
)


def load_users(state: StateStore, kind: UserKind, path: str | Path | None) -> None:
    """Replace the ``kind`` users with a user file's DIDs (``ConfigError`` for a bad file). A
    purged DID stays out: a stale copy of the study's list does not bring back a withdrawal;
    its line is skipped with a warning (``StateStore.purges.reenrol`` lets it in again)."""
    if path is None:
        return
    match read_user_lines(path):
        case Failure(message):
            raise ConfigError(message)
        case result:
            purged = state.population.purged()
            kept = []
            for line, did in result.unwrap():
                if did in purged:
                    log.warning("%s:%d: %s was purged (withdrawn or deleted): skipped; "
                                "--reenrol %s enrols it again", path, line, did, did)  # fmt: skip
                else:
                    kept.append(did)
            state.population.replace(kind, kept)


def check_written(state: StateStore, handlers: Registry) -> None:
    """``ConfigError`` naming every handler that wrote to the cache, and every dataset the export
    wrote, that ``handlers`` lacks (the state remembers them): without them, what they hold would
    be lost (deletes no longer routed, files never exported) or leaked (rows a purge misses)."""
    wrote, exported = state.written_by.names()
    handlers_missing = sorted(wrote - set(handlers))
    datasets_missing = sorted(exported - set(datasets_of(handlers)))
    if handlers_missing or datasets_missing:
        named = [f"handlers {', '.join(handlers_missing)}"] if handlers_missing else []
        named += [f"datasets {', '.join(datasets_missing)}"] if datasets_missing else []
        raise ConfigError(
            f"the registry given lacks {' and '.join(named)}, which wrote to the store {state.path}; "
            + WAY_ON
        )


def check_cache_tree(root: str, handlers: Registry, *, staging: str = ".export") -> None:
    """``ConfigError`` naming what in the cache (and in an export's claims under ``staging``)
    no handler of ``handlers`` reads: an export would pass it over and a reset would lose it."""
    directories = {config.directory: config.nested_path is not None for config in handlers.values()}
    found = stray_entries(root, directories)
    claims = os.path.join(root, staging)
    if os.path.isdir(claims) and not os.path.islink(claims):
        for name in sorted(os.listdir(claims)):
            path = os.path.join(claims, name)
            if name.endswith(".claim"):  # the directories an interrupted export claimed
                with open(path, encoding="utf-8") as manifest:
                    listed = [line for line in manifest.read().split("\n") if line]
                found += [f"{staging}/{name}: {d}" for d in listed if d not in directories]
            elif not name.startswith(".") and os.path.isdir(path) and not os.path.islink(path):
                found += [f"{staging}/{name}/{entry}" for entry in stray_entries(path, directories)]
    if found:
        shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        raise ConfigError(
            f"the cache {root} holds what no handler of the registry given reads: {shown}; " + WAY_ON
        )
