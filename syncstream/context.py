"""The two phases' contexts, built once at set-up with every choice already resolved."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from returns.result import Failure

from syncstream.cache import SymlinkInCacheError, WriterLock, create_tree, stray_entries
from syncstream.errors import ConfigError
from syncstream.handlers import HANDLERS, Registry, check_registry, datasets_of
from syncstream.state import Population, StateStore
from syncstream.users import read_user_lines

if TYPE_CHECKING:
    from syncstream.export.parts import PartWrites
    from syncstream.storage import StorageRepository
    from syncstream.storage_options import StorageOptions

__all__ = [
    "BatchExportContext",
    "CacheWriteContext",
    "check_cache_tree",
    "check_written",
    "load_users",
    "setup_batch_export_system",
    "setup_cache_write_system",
]

log = logging.getLogger("syncstream.state")

WAY_ON = (
    "give the registry that wrote them (--handlers MODULE:NAME or SYNCSTREAM_HANDLERS; "
    "handlers= in the library)"
)


class CacheWriteContext(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the write phase needs; the writer lock is held while the context lives."""

    cache_root: str
    state: StateStore
    population: Population
    handlers: Registry
    lock: WriterLock

    def close(self) -> None:
        self.state.close()
        self.lock.release()


class BatchExportContext(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the export phase needs, resolved once: where from, where to (``parts``
    builds and writes the Parquet files), how much at once."""

    cache_root: str
    state: StateStore
    handlers: Registry
    parts: PartWrites
    output: str | StorageRepository  # where the parts go: a purge rewrites them there
    storage_options: StorageOptions | None = None
    batch_files: int = 1_000  # cache files per chunk: bounds the export's memory ...
    batch_bytes: int = 16 << 20  # ... and their bytes, for caches of large records
    dedup_window_hours: float = 72.0  # how long exported keys are remembered (relay replay window)
    format: str = "delta"  # "delta": each dataset a Delta table; "parquet": plain Hive-partitioned files

    def close(self) -> None:
        self.parts.close()
        self.state.close()


def load_users(state: StateStore, kind: str, path: str | Path | None) -> None:
    """Replace the ``kind`` users with a user file's DIDs (``ConfigError`` for a bad file). A
    purged DID stays out: a stale copy of the study's list does not bring back a withdrawal;
    its line is skipped with a warning (``StateStore.reenrol`` lets it in again)."""
    if path is None:
        return
    match read_user_lines(path):
        case Failure(message):
            raise ConfigError(message)
        case result:
            purged = state.purged_dids()
            kept = []
            for line, did in result.unwrap():
                if did in purged:
                    log.warning("%s:%d: %s was purged (withdrawn or deleted): skipped; "
                                "--reenrol %s enrols it again", path, line, did, did)  # fmt: skip
                else:
                    kept.append(did)
            state.replace_users(kind, kept)


def check_written(state: StateStore, handlers: Registry) -> None:
    """``ConfigError`` naming every handler that wrote to the cache, and every dataset the export
    wrote, that ``handlers`` lacks (the state remembers them): without them, what they hold would
    be lost (deletes no longer routed, files never exported) or leaked (rows a purge misses)."""
    wrote, exported = state.written_by()
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


def setup_cache_write_system(
    cache_dir: str | Path,
    state_path: str | Path,
    *,
    study_users: str | Path | None = None,
    in_network_users: str | Path | None = None,
    handlers: Registry = HANDLERS,
    reenrol: Iterable[str] = (),
    create_state: bool = True,
) -> CacheWriteContext:
    """Open the state, load the user files (when given), lay the tree and take the writer lock.

    ``handlers`` is the registry this system routes and writes by (``HANDLERS`` by default).
    A purged DID in a user file is skipped unless it is in ``reenrol``. Without
    ``create_state`` (a backfill), a missing store is an error and nothing is created.
    Raises ``ConfigError`` for a bad user file, store or registry (one that lacks a handler or
    a dataset that wrote to the store: ``check_written``) and ``CacheLockedError`` when another
    writer holds the cache.
    """
    check_registry(handlers)
    if not create_state:
        StateStore(state_path, create=False).close()  # before the cache directory is made
    # Links above the root are the user's to choose; below it none is ever followed, and
    # every path the writer builds starts with the root's real path.
    os.makedirs(cache_dir, exist_ok=True)
    root = os.path.realpath(cache_dir)
    lock = WriterLock(root).acquire()
    try:
        state = StateStore(state_path, create=create_state)
        try:
            check_written(state, handlers)
            state.reenrol(reenrol)
            load_users(state, "study", study_users)
            load_users(state, "in_network", in_network_users)
            try:
                create_tree(root, (config.directory for config in handlers.values()))
            except SymlinkInCacheError as error:
                raise ConfigError(
                    f"{error.filename} is a symbolic link inside the cache; syncstream never follows "
                    "one: replace it with a directory"
                ) from None
            population = state.population()
        except BaseException:
            state.close()
            raise
    except BaseException:
        lock.release()
        raise
    return CacheWriteContext(
        cache_root=root, state=state, population=population, handlers=handlers, lock=lock
    )


def setup_batch_export_system(
    cache_dir: str | Path,
    state_path: str | Path,
    out: str | StorageRepository,
    *,
    batch_files: int = 1_000,
    batch_bytes: int = 16 << 20,
    dedup_window_hours: float = 72.0,
    helper_process: bool = False,
    parts: PartWrites | None = None,
    storage_options: StorageOptions | None = None,
    handlers: Registry = HANDLERS,
    format: str = "delta",
) -> BatchExportContext:
    """Open the state and the output storage (a directory, a ``pyarrow.fs`` URI or an adapter).

    With ``helper_process`` (and ``out`` a directory or URI), a helper process builds, writes
    and commits the Parquet parts while this one reads, deduplicates and removes; only the
    helper imports pyarrow. ``parts`` is a part writer already started for ``out`` (the
    command starts its helper first thing, so that it is ready sooner); the context owns it,
    and it is closed if set-up fails.

    ``handlers`` is the registry whose directories are exported, each to its handler's
    dataset (``HANDLERS`` by default); a helper is sent the datasets it writes by reference,
    so their views and column functions must then be importable (module-level) functions.

    Raises ``ConfigError`` when there is no cache at ``cache_dir`` or no state store at
    ``state_path`` (neither is created), the output cannot be opened, an option is out of
    range, the registry is not one or lacks what wrote to the store (``check_written``), or the
    cache holds folders or files none of its handlers reads (``check_cache_tree``): nothing is
    exported then, so nothing is lost.
    """
    from syncstream.export.parts import HelperParts, InlineParts, check_sendable  # noqa: PLC0415

    state: StateStore | None = None
    try:
        check_registry(handlers)
        if helper_process or isinstance(parts, HelperParts):
            check_sendable(config.dataset for config in handlers.values())
        root = os.path.realpath(cache_dir)
        if not os.path.isdir(root):
            raise ConfigError(f"no cache at {os.path.abspath(cache_dir)}")
        if batch_files < 1:
            raise ConfigError("batch_files must be at least 1")
        if batch_bytes < 1:
            raise ConfigError("batch_bytes must be at least 1")
        if dedup_window_hours < 0:
            raise ConfigError("dedup_window_hours must not be negative")
        if format not in ("delta", "parquet"):
            raise ConfigError(f"format must be delta or parquet, not {format!r}")
        if format == "delta" and not isinstance(out, str):
            raise ConfigError("a Delta export takes its output as a directory or URI")
        state = StateStore(state_path, create=False)  # only the writer creates a store
        check_written(state, handlers)
        check_cache_tree(root, handlers)
        if parts is None and helper_process and isinstance(out, str):
            parts = HelperParts(out, options=(storage_options or _default_storage()).to_args())
        elif parts is None:
            from syncstream.storage import storage_for  # noqa: PLC0415 (pyarrow: export only)

            parts = InlineParts(storage_for(out, storage_options) if isinstance(out, str) else out)
    except BaseException:
        if parts is not None:
            parts.close()
        if state is not None:
            state.close()
        raise
    return BatchExportContext(
        cache_root=root,
        state=state,
        handlers=handlers,
        parts=parts,
        output=out,
        storage_options=storage_options,
        batch_files=batch_files,
        batch_bytes=batch_bytes,
        dedup_window_hours=dedup_window_hours,
        format=format,
    )


def _default_storage() -> StorageOptions:
    from syncstream.storage_options import StorageOptions  # noqa: PLC0415

    return StorageOptions()
