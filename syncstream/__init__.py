"""syncstream: a study population's Bluesky activity, from the firehose to Parquet.

Phase 1 (``syncstream.write``) routes relay frames into a cache tree of small JSON files;
phase 2 (``syncstream.export``) turns the cache into date-partitioned Parquet datasets.
"""

from __future__ import annotations

from typing import Any

from syncstream.context import (
    BatchExportContext,
    CacheWriteContext,
    setup_batch_export_system,
    setup_cache_write_system,
)
from syncstream.errors import CacheLockedError, ConfigError, SyncstreamError
from syncstream.handlers import HANDLERS, HandlerConfig
from syncstream.records import CachedRecord
from syncstream.types import FollowStatus, HandlerKey, Operation, RecordType, Service


def __getattr__(name: str) -> Any:
    # importlib.metadata costs 35 ms at start-up: both commands would pay it for a version
    # string they never print.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        try:
            return version("syncstream")
        except PackageNotFoundError:  # a source tree that was not installed
            return "0+unknown"
    raise AttributeError(f"module 'syncstream' has no attribute {name!r}")


__all__ = [
    "HANDLERS",
    "BatchExportContext",
    "CacheLockedError",
    "CacheWriteContext",
    "CachedRecord",
    "ConfigError",
    "FollowStatus",
    "HandlerConfig",
    "HandlerKey",
    "Operation",
    "RecordType",
    "Service",
    "SyncstreamError",
    "setup_batch_export_system",
    "setup_cache_write_system",
]
