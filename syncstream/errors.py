"""One exception root for everything syncstream raises on purpose."""

from __future__ import annotations

__all__ = ["CacheLockedError", "ConfigError", "SyncstreamError"]


class SyncstreamError(Exception):
    """Root of syncstream's own exceptions."""


class ConfigError(SyncstreamError, ValueError):
    """Bad user input: a user file, an argument, a path."""


class CacheLockedError(SyncstreamError, RuntimeError):
    """The cache is held by a writer, so it cannot be reset or held again."""
