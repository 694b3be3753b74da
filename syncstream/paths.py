"""Where a record lives in the cache tree: pure functions of the record, no I/O.

Every value that becomes a path component is checked against AT Protocol syntax here, so a
record either gets a path inside its handler's directory or is rejected with a reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from syncstream.records import CachedRecord
from syncstream.syntax import is_did, is_record_key
from syncstream.types import POST

__all__ = [
    "MAX_NAME_BYTES",
    "NestedPathExtractor",
    "PathStrategy",
    "author_directory",
    "bounded_name",
    "delete_file_name",
    "follow_file_name",
    "like_file_name",
    "liked_record_rkey",
    "post_file_name",
    "reply_parent_rkey",
    "study_post_rkey",
]

PathStrategy = Callable[[CachedRecord], str]
"""A record's file name within its handler directory (components already validated)."""

NestedPathExtractor = Callable[[str, dict[str, object] | None], str | None]
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


def post_file_name(record: CachedRecord) -> str:
    return f"author_did={record.author_did}_post_uri_suffix={record.rkey}.json"


def like_file_name(record: CachedRecord) -> str:
    return f"author_did={record.author_did}_like_uri_suffix={record.rkey}.json"


def follow_file_name(record: CachedRecord) -> str:
    return (
        f"follower_did={record.author_did}_followee_did={record.subject_did}"
        f"_follow_uri_suffix={record.rkey}.json"
    )


_DELETE_NOUN = {"app.bsky.feed.post": "post", "app.bsky.feed.like": "like", "app.bsky.graph.follow": "follow"}


def delete_file_name(record: CachedRecord) -> str:
    noun = _DELETE_NOUN[record.collection]
    return f"author_did={record.author_did}_{noun}_uri_suffix={record.rkey}.json"


def _uri_at(record: dict[str, object] | None, *keys: str) -> str | None:
    value: object = record
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, str) else None


def _rkey_of(uri: str | None, collection: str | None = None) -> str | None:
    """The rkey of ``at://authority/collection/rkey`` when it is a valid record key (and, if
    given, the collection matches); only the rkey becomes a path component."""
    if uri is None or not uri.startswith("at://"):
        return None
    parts = uri[5:].split("/")
    if len(parts) != 3 or (collection is not None and parts[1] != collection):
        return None
    return parts[2] if is_record_key(parts[2]) else None


def liked_record_rkey(author: str, record: dict[str, object] | None) -> str | None:
    """The rkey of a like's subject (any collection: likes of feeds are likes too)."""
    return _rkey_of(_uri_at(record, "subject", "uri"))


def study_post_rkey(author: str, record: dict[str, object] | None) -> str | None:
    """The rkey of a like's subject when the subject is a post."""
    return _rkey_of(_uri_at(record, "subject", "uri"), POST)


def reply_parent_rkey(author: str, record: dict[str, object] | None) -> str | None:
    return _rkey_of(_uri_at(record, "reply", "parent", "uri"), POST)


def author_directory(author: str, record: dict[str, object] | None) -> str | None:
    return author if is_did(author) else None
