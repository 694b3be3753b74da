"""The export phase's context, built once at set-up with every choice already resolved."""

from __future__ import annotations

import logging
import os
from types import TracebackType
from typing import TYPE_CHECKING, Self

import msgspec

from syncstream.errors import ConfigError
from syncstream.export.options import ExportOptions
from syncstream.export.parts import HelperParts, InlineParts, PartWrites, check_sendable
from syncstream.preflight import check_cache_tree, check_written
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.handlers import Registry, check_registry
from syncstream.store import StateStore

if TYPE_CHECKING:
    from syncstream.lake.storage import StorageRepository
    from syncstream.lake.storage_options import StorageOptions

__all__ = ["BatchExportContext", "setup_batch_export_system"]

log = logging.getLogger("syncstream.export")


class BatchExportContext(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the export phase needs, resolved once: where from, where to (``parts``
    builds and writes the Parquet files), how much at once. ``with setup_batch_export_system(...)
    as context:`` closes the part writer and the store it owns."""

    cache_root: str
    state: StateStore
    handlers: Registry
    parts: PartWrites
    output: str | StorageRepository  # where the parts go: a purge rewrites them there
    storage_options: StorageOptions
    batch_files: int  # each of these as in ExportOptions
    batch_bytes: int
    dedup_window_hours: float
    format: str
    keep_deleted_content: bool = False  # a delete leaves its record's content in the tables

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.parts.close()
        self.state.close()


def setup_batch_export_system(
    options: ExportOptions,
    *,
    storage: StorageRepository | None = None,
    helper_process: bool = False,
    parts: PartWrites | None = None,
    handlers: Registry = HANDLERS,
) -> BatchExportContext:
    """Open the state at ``options.state`` and the output storage at ``options.out`` (a
    directory or a ``pyarrow.fs`` URI), or ``storage``, an adapter, instead. ``options`` are
    the export command's (``ExportOptions``: what is left out has the command's default); the
    set-up reads the cache, state, output, batch, storage, deduplication and format options.

    With ``helper_process`` (and ``out`` a directory or URI), a helper process builds, writes
    and commits the Parquet parts while this one reads, deduplicates and removes; only the
    helper imports pyarrow. ``parts`` is a part writer already started for ``out`` (the
    command starts its helper first thing, so that it is ready sooner); the context owns it,
    and it is closed if set-up fails.

    ``handlers`` is the registry whose directories are exported, each to its handler's
    dataset (``HANDLERS`` by default); a helper is sent the datasets it writes by reference,
    so their views and column functions must then be importable (module-level) functions.

    Raises ``ConfigError`` when there is no cache at ``options.cache_dir`` or no state store at
    ``options.state`` (neither is created), the output cannot be opened, the registry is not
    one or lacks what wrote to the store (``check_written``), or the cache holds folders or
    files none of its handlers reads (``check_cache_tree``): nothing is exported then, so
    nothing is lost. (An option out of range never gets here: ``ExportOptions`` refuses it.)
    """
    cache_dir, out = options.cache_dir, storage if storage is not None else options.out
    state: StateStore | None = None
    try:
        check_registry(handlers)
        if helper_process or isinstance(parts, HelperParts):
            check_sendable(config.dataset for config in handlers.values())
        root = os.path.realpath(cache_dir)
        if not os.path.isdir(root):
            raise ConfigError(f"no cache at {os.path.abspath(cache_dir)}")
        if options.format == "delta" and not isinstance(out, str):
            raise ConfigError("a Delta export takes its output as a directory or URI")
        state = StateStore(options.state, create=False)  # only the writer creates a store
        state.cache_home.check(root)  # one store, one cache: its mark
        check_written(state, handlers)
        check_cache_tree(root, handlers)
        if parts is None and helper_process and isinstance(out, str):
            parts = HelperParts(out, options=options.storage.to_args())
        elif parts is None:
            from syncstream.lake.storage import storage_for  # noqa: PLC0415 (pyarrow: export only)

            parts = InlineParts(storage_for(out, options.storage) if isinstance(out, str) else out)
        if options.format == "parquet" and not options.keep_deleted_content:
            log.warning(
                "a plain-Parquet output keeps deleted records' content (erasing it needs Delta tables)",
                extra={"event": "deleted_content_kept"},
            )
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
        storage_options=options.storage,
        batch_files=options.batch_files,
        batch_bytes=options.batch_bytes,
        dedup_window_hours=options.dedup_window_hours,
        format=options.format,
        keep_deleted_content=options.keep_deleted_content,
    )
