"""The write phase's context, built once at set-up with every choice already resolved."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

import msgspec

from syncstream.cache import WriterLock, create_tree
from syncstream.errors import ConfigError, SymlinkInCacheError
from syncstream.preflight import check_written, load_users
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.handlers import Registry, check_registry
from syncstream.registry.population import Population
from syncstream.store import StateStore, UserKind
from syncstream.store.writer_lock import StoreLock

__all__ = ["CacheWriteContext", "setup_cache_write_system"]


class CacheWriteContext(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the write phase needs; the writer lock is held while the context lives
    (``with setup_cache_write_system(...) as context:`` closes the store and releases it)."""

    cache_root: str
    state: StateStore
    population: Population
    handlers: Registry
    lock: WriterLock
    store_lock: StoreLock
    reenrolled: frozenset[str] = frozenset()  # purged DIDs enrolled again at this start

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.state.close()
        self.store_lock.release()
        self.lock.release()


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
    a dataset that wrote to the store: ``check_written``; a cache that is not the store's:
    ``CacheHome``),
    ``CacheLockedError`` when another writer holds the cache and ``StoreLockedError`` when
    another holds the store.
    """
    check_registry(handlers)
    reenrol = tuple(reenrol)  # read twice: the purges forget them, the record says so
    # A store that exists is opened (a newer one refused unchanged) and held before the cache
    # is touched: a second writer on it, whatever its cache, changes nothing.
    existing = os.path.exists(state_path) or not create_state
    held = _hold(state_path, create=create_state, cache_dir=cache_dir) if existing else None
    # Links above the root are the user's to choose; below it none is ever followed, and
    # every path the writer builds starts with the root's real path.
    os.makedirs(cache_dir, exist_ok=True)
    root = os.path.realpath(cache_dir)
    try:
        lock = WriterLock(root).acquire()
    except BaseException:
        if held is not None:
            held[0].close()
            held[1].release()
        raise
    try:
        state, store_lock = held or _hold(state_path, create=create_state, cache_dir=cache_dir)
        try:
            state.cache_home.bind(root, state.exports.store_id())
            check_written(state, handlers)
            state.purges.reenrol(reenrol)
            load_users(state, UserKind.STUDY, study_users)
            load_users(state, UserKind.IN_NETWORK, in_network_users)
            try:
                create_tree(root, (config.directory for config in handlers.values()))
            except SymlinkInCacheError as error:
                raise ConfigError(
                    f"{error.filename} is a symbolic link inside the cache; syncstream never follows "
                    "one: replace it with a directory"
                ) from None
            population = state.population.current()
        except BaseException:
            state.close()
            store_lock.release()
            raise
    except BaseException:
        lock.release()
        raise
    return CacheWriteContext(
        cache_root=root,
        state=state,
        population=population,
        handlers=handlers,
        lock=lock,
        store_lock=store_lock,
        reenrolled=frozenset(reenrol),
    )


def _hold(state_path: str | Path, *, create: bool, cache_dir: str | Path) -> tuple[StateStore, StoreLock]:
    """The store, open and held by this writer; ``StoreLockedError`` when another holds it,
    ``ConfigError`` when it belongs to another cache (checked before the cache is made)."""
    state = StateStore(state_path, create=create)
    try:
        store_lock = StoreLock(state.path).acquire()
    except BaseException:
        state.close()
        raise
    try:
        state.cache_home.check(os.path.realpath(cache_dir))
    except BaseException:
        state.close()
        store_lock.release()
        raise
    return state, store_lock
