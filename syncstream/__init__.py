"""syncstream: a study population's Bluesky activity, from the firehose to Parquet.

Phase 1 (``syncstream.write``) routes relay frames into a cache tree of small JSON files;
phase 2 (``syncstream.export``) turns the cache into date-partitioned Delta tables.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncstream.errors import CacheLockedError, ConfigError, SyncstreamError
    from syncstream.export.context import BatchExportContext, setup_batch_export_system
    from syncstream.export.options import ExportOptions
    from syncstream.frames import OpSpec, commit_frame, write_replay
    from syncstream.lake.current import current_records
    from syncstream.registry.builtin import HANDLERS
    from syncstream.registry.datasets import Column, Dataset, head_column, view_column
    from syncstream.registry.handlers import (
        HandlerConfig,
        Registry,
        check_registry,
        create_handler,
        delete_handler,
    )
    from syncstream.registry.records import CachedRecord
    from syncstream.registry.types import FollowStatus, HandlerKey, Operation, RecordType, Service
    from syncstream.registry.views import FileHead
    from syncstream.write.context import CacheWriteContext, setup_cache_write_system

# The public names, each resolved from its module on first use: a process that imports one
# module of the package (the commands' helper processes do) does not pay for all of them, and
# the SQLite, returns and context imports stay out of a helper's start-up.
_HOME = {
    "HANDLERS": "syncstream.registry.builtin",
    "BatchExportContext": "syncstream.export.context",
    "CacheLockedError": "syncstream.errors",
    "CacheWriteContext": "syncstream.write.context",
    "CachedRecord": "syncstream.registry.records",
    "Column": "syncstream.registry.datasets",
    "ConfigError": "syncstream.errors",
    "Dataset": "syncstream.registry.datasets",
    "ExportOptions": "syncstream.export.options",
    "FileHead": "syncstream.registry.views",
    "FollowStatus": "syncstream.registry.types",
    "HandlerConfig": "syncstream.registry.handlers",
    "HandlerKey": "syncstream.registry.types",
    "OpSpec": "syncstream.frames",
    "Operation": "syncstream.registry.types",
    "RecordType": "syncstream.registry.types",
    "Registry": "syncstream.registry.handlers",
    "Service": "syncstream.registry.types",
    "SyncstreamError": "syncstream.errors",
    "check_registry": "syncstream.registry.handlers",
    "commit_frame": "syncstream.frames",
    "create_handler": "syncstream.registry.handlers",
    "current_records": "syncstream.lake.current",
    "delete_handler": "syncstream.registry.handlers",
    "head_column": "syncstream.registry.datasets",
    "setup_batch_export_system": "syncstream.export.context",
    "setup_cache_write_system": "syncstream.write.context",
    "view_column": "syncstream.registry.datasets",
    "write_replay": "syncstream.frames",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value
        return value
    if name == "__version__":
        # importlib.metadata costs 35 ms at start-up: both commands would pay it for a version
        # string they never print.
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        try:
            return version("syncstream")
        except PackageNotFoundError:  # a source tree that was not installed
            return "0+unknown"
    raise AttributeError(f"module 'syncstream' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


__all__ = [
    "HANDLERS",
    "BatchExportContext",
    "CacheLockedError",
    "CacheWriteContext",
    "CachedRecord",
    "Column",
    "ConfigError",
    "Dataset",
    "ExportOptions",
    "FileHead",
    "FollowStatus",
    "HandlerConfig",
    "HandlerKey",
    "OpSpec",
    "Operation",
    "RecordType",
    "Registry",
    "Service",
    "SyncstreamError",
    "check_registry",
    "commit_frame",
    "create_handler",
    "current_records",
    "delete_handler",
    "head_column",
    "setup_batch_export_system",
    "setup_cache_write_system",
    "view_column",
    "write_replay",
]
