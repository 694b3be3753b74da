"""syncstream: a study population's Bluesky activity, from the firehose to Parquet.

Phase 1 (``syncstream.write``) routes relay frames into a cache tree of small JSON files;
phase 2 (``syncstream.export``) turns the cache into date-partitioned Parquet datasets.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

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

try:
    __version__ = version("syncstream")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

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
