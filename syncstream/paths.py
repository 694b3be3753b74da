"""Where a record lives in the cache tree: pure functions of the record, no I/O.

Every value that becomes a path component is checked against AT Protocol syntax here, so a
record either gets a path inside its handler's directory or is rejected with a reason.
"""

from __future__ import annotations

from collections.abc import Callable

from syncstream.records import CachedRecord
from syncstream.syntax import is_did, is_record_key
from syncstream.types import POST

__all__ = [
    "NestedPathExtractor",
    "PathStrategy",
    "author_directory",
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
