"""The export phase's context, built once at set-up with every choice already resolved."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from syncstream.errors import ConfigError
from syncstream.export.parts import HelperParts, InlineParts, PartWrites, check_sendable
from syncstream.preflight import check_cache_tree, check_written
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.handlers import Registry, check_registry
from syncstream.store import StateStore

if TYPE_CHECKING:
    from syncstream.storage import StorageRepository
    from syncstream.storage_options import StorageOptions

__all__ = ["BatchExportContext", "setup_batch_export_system"]


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
