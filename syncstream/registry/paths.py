"""Where a record lives in the cache tree: pure functions of the record, no I/O.

Every value that becomes a path component is checked against AT Protocol syntax here, so a
record either gets a path inside its handler's directory or is rejected with a reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from syncstream.registry import references as refs
from syncstream.registry.records import BACKFILL, CachedRecord
from syncstream.registry.syntax import is_did
from syncstream.registry.types import POST

__all__ = [
    "MAX_NAME_BYTES",
    "NestedPathExtractor",
    "PathStrategy",
    "author_directory",
    "block_file_name",
    "bounded_name",
    "event_file_name",
    "follow_delete_file_name",
    "follow_file_name",
    "follow_subject_did",
    "like_file_name",
    "post_file_name",
    "profile_file_name",
    "quoted_post_rkey",
    "reply_parent_rkey",
    "repost_file_name",
    "subject_post_rkey",
    "subject_rkey",
    "version_name",
]

PathStrategy = Callable[[CachedRecord], str]
"""A record's file name within its handler directory (components already validated)."""

NestedPathExtractor = Callable[[str, dict[str, Any] | None], str | None]
"""(author DID, record) -> the nested directory name, or None when the record has none valid."""


MAX_NAME_BYTES = 250
"""The longest file or directory name the cache uses: 255 (NAME_MAX) less the ``.{name}.tmp``
of an atomic write."""

_KEPT_BYTES = 200  # of a longer name, kept readable before its digest


def bounded_name(name: str) -> str:
    """``name`` itself when it fits ``MAX_NAME_BYTES``; else a stable shortened form, its first
    200 bytes, ``~`` and 32 hex digits of its SHA-256 (keeping a ``.json`` suffix).

    rkeys may be 512 characters and DIDs 2,048: spec-valid values must get a name. The cache
    file keeps the full values, and reads, deletes and the export list directories, so the
    shortened name is only ever derived again from the same values, never parsed.
    """
    encoded = name.encode()
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    suffix = ".json" if name.endswith(".json") else ""
    digest = hashlib.sha256(encoded).hexdigest()[:32]
    return f"{encoded[:_KEPT_BYTES].decode(errors='ignore')}~{digest}{suffix}"


# File names: a record's and its delete's are the same, but for a follow, whose delete does
# not know the subject.


def post_file_name(record: CachedRecord) -> str:
    return f"author_did={record.author_did}_post_uri_suffix={record.rkey}.json"


def like_file_name(record: CachedRecord) -> str:
    return f"author_did={record.author_did}_like_uri_suffix={record.rkey}.json"


def repost_file_name(record: CachedRecord) -> str:
    return f"author_did={record.author_did}_repost_uri_suffix={record.rkey}.json"


def profile_file_name(record: CachedRecord) -> str:
    """A profile's (its rkey is ``self``; each update is a version beside it)."""
    return f"author_did={record.author_did}_profile_uri_suffix={record.rkey}.json"


def block_file_name(record: CachedRecord) -> str:
    return f"author_did={record.author_did}_block_uri_suffix={record.rkey}.json"


def follow_file_name(record: CachedRecord) -> str:
    return (
        f"follower_did={record.author_did}_followee_did={record.subject_did}"
        f"_follow_uri_suffix={record.rkey}.json"
    )


def event_file_name(record: CachedRecord) -> str:
    """An account event's: its DID and its seq (its rkey)."""
    return f"did={record.author_did}_seq={record.rkey}.json"


def follow_delete_file_name(record: CachedRecord) -> str:
    return f"author_did={record.author_did}_follow_uri_suffix={record.rkey}.json"


def version_name(name: str, record: CachedRecord) -> str:
    """The file of an update: its create's name and the new version's cid, so that every
    version of a record has a file of its own until it is exported (the cid was checked).
    A backfilled version's name says so: it replaces no file of the stream (the export keeps
    one row per version, the stream's when both are there)."""
    suffix = "_backfill" if record.source == BACKFILL else ""
    return f"{name.removesuffix('.json')}_cid={record.cid}{suffix}.json"


# Nested directories, and a follow's subject: None when the record has no valid one.


def subject_rkey(author: str, record: dict[str, Any] | None) -> str | None:
    """The rkey of a like's or a repost's subject (any collection: a liked feed counts too)."""
    return refs.rkey_of(refs.subject_uri(record))


def subject_post_rkey(author: str, record: dict[str, Any] | None) -> str | None:
    """The rkey of a like's or a repost's subject when the subject is a post."""
    return refs.rkey_of(refs.subject_uri(record), POST)


def reply_parent_rkey(author: str, record: dict[str, Any] | None) -> str | None:
    return refs.rkey_of(refs.reply_parent_uri(record), POST)


def quoted_post_rkey(author: str, record: dict[str, Any] | None) -> str | None:
    return refs.rkey_of(refs.quoted_uri(record), POST)


def author_directory(author: str, record: dict[str, Any] | None) -> str | None:
    return author if is_did(author) else None


def follow_subject_did(record: dict[str, Any] | None) -> str | None:
    found = refs.subject(record)
    return found if isinstance(found, str) and is_did(found) else None
