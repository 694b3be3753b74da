"""One exception root for everything syncstream raises on purpose.

Each class also keeps the builtin base its callers catch (``except ValueError`` still catches a
``ReplayError``). The tree::

    SyncstreamError                      the root: every exception class of syncstream
        ConfigError (ValueError)         bad user input: a user file, an argument, a path
        CacheLockedError (RuntimeError)  the cache is held by a writer
        CacheWriteError (OSError)        a cache file could not be written
        LakeLockedError (RuntimeError)   an output is locked by another command (lake.lock)
        StoreLockedError (RuntimeError)  a state store is held by another writer
        SymlinkInCacheError (OSError)    a path inside the cache goes through a symbolic link
        RelayError (RuntimeError)        the relay cannot serve this writer as it stands
        ReplayError (ValueError)         a replay file ends inside a frame
        HelperError (RuntimeError)       a helper process stopped before it finished
        FailpointError (RuntimeError)    a failpoint armed with ``raise`` fired
        PurgeError (RuntimeError)        a purge could not go on (the next one finishes it)
        SchemaMismatchError (ValueError) a table column's type is not the dataset's
        SnapshotError (RuntimeError)     a snapshot could not be written
        RepoError (ValueError)           a backfilled CAR is not a repository to trust
        ProofError (ValueError)          a commit's blocks or MST do not prove its ops
        FetchError                       a repository could not be fetched from its PDS
        KeyUnavailable                   a DID's signing key cannot be had now
        Waited                           (backfill.polite) a host's wait would pass the deadline
        _Abandoned                       (backfill.job) a backfill job was stopped: internal

``Waited`` and ``_Abandoned`` are signals inside the backfill, defined beside their one user.
"""

from __future__ import annotations

import errno

__all__ = [
    "CacheLockedError",
    "CacheWriteError",
    "ConfigError",
    "FailpointError",
    "FetchError",
    "HelperError",
    "KeyUnavailable",
    "LakeLockedError",
    "ProofError",
    "PurgeError",
    "RelayError",
    "ReplayError",
    "RepoError",
    "SchemaMismatchError",
    "SnapshotError",
    "StoreLockedError",
    "SymlinkInCacheError",
    "SyncstreamError",
]


class SyncstreamError(Exception):
    """Root of syncstream's own exceptions."""


class ConfigError(SyncstreamError, ValueError):
    """Bad user input: a user file, an argument, a path."""


class CacheLockedError(SyncstreamError, RuntimeError):
    """The cache is held by a writer, so it cannot be reset or held again."""


class LakeLockedError(SyncstreamError, RuntimeError):
    """An output's tables are locked by another command (an export, a purge, a compaction)."""


class StoreLockedError(SyncstreamError, RuntimeError):
    """The state store is held by another writer: one store, one writer."""


class CacheWriteError(SyncstreamError, OSError):
    """A cache file could not be written (a full disk, a permission): nothing past the last
    durable cursor counts as done, so a restart rewrites it."""


class SymlinkInCacheError(SyncstreamError, OSError):
    """A path inside the cache goes through a symbolic link: syncstream never follows one."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ELOOP, "a symbolic link inside the cache is never followed", path)


class RelayError(SyncstreamError, RuntimeError):
    """The relay cannot serve this writer as it stands (a cursor beyond its stream): redialling
    would loop forever, so the writer stops and says how to go on."""


class ReplayError(SyncstreamError, ValueError):
    """The replay file ends inside a frame."""


class HelperError(SyncstreamError, RuntimeError):
    """A helper process stopped before it finished its work."""


class FailpointError(SyncstreamError, RuntimeError):
    """Raised by a failpoint armed with ``raise``."""


class PurgeError(SyncstreamError, RuntimeError):
    """A purge could not go on (it is recorded: the next purge or export finishes it)."""


class SchemaMismatchError(SyncstreamError, ValueError):
    """A column's type in the table is not the dataset's: refused, never cast."""


class SnapshotError(SyncstreamError, RuntimeError):
    """A snapshot could not be written (a version whose files are gone)."""


class RepoError(SyncstreamError, ValueError):
    """The CAR is not a repository this walk can trust."""


class ProofError(SyncstreamError, ValueError):
    """A commit's blocks or its MST do not prove what its ops say (a hash, a path, prevData);
    ``reason`` names the check that failed, as it is counted."""

    def __init__(self, message: str, reason: str = "incomplete_proof") -> None:
        super().__init__(message)
        self.reason = reason


class FetchError(SyncstreamError):
    """The repository could not be fetched (the reason says what, where, after how long)."""


class KeyUnavailable(SyncstreamError):
    """The DID's key cannot be had now (the directory down, no document, no key in it)."""
