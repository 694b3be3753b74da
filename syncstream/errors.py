"""One exception root for everything syncstream raises on purpose."""

from __future__ import annotations

__all__ = [
    "CacheLockedError",
    "CacheWriteError",
    "ConfigError",
    "HelperError",
    "RelayError",
    "SyncstreamError",
]


class SyncstreamError(Exception):
    """Root of syncstream's own exceptions."""


class ConfigError(SyncstreamError, ValueError):
    """Bad user input: a user file, an argument, a path."""


class CacheLockedError(SyncstreamError, RuntimeError):
    """The cache is held by a writer, so it cannot be reset or held again."""


class CacheWriteError(SyncstreamError, OSError):
    """A cache file could not be written (a full disk, a permission): nothing past the last
    durable cursor counts as done, so a restart rewrites it."""


class RelayError(SyncstreamError, RuntimeError):
    """The relay cannot serve this writer as it stands (a cursor beyond its stream): redialling
    would loop forever, so the writer stops and says how to go on."""


class HelperError(SyncstreamError, RuntimeError):
    """A helper process stopped before it finished its work."""
