"""The references a record makes to other records and accounts: a reply's parent, a like's or a
repost's subject, a quoted post, a follow's subject. Raw values, as the record holds them:
``selectors`` asks whom they point at, ``paths`` validates what becomes a path component.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncstream.registry.syntax import is_record_key
from syncstream.registry.types import POST

__all__ = [
    "EMBED_RECORD",
    "EMBED_RECORD_WITH_MEDIA",
    "at",
    "authority",
    "embedded_uri",
    "is_post_of",
    "quoted_uri",
    "reply_parent_uri",
    "rkey_of",
    "subject",
    "subject_uri",
]

EMBED_RECORD = "app.bsky.embed.record"
EMBED_RECORD_WITH_MEDIA = "app.bsky.embed.recordWithMedia"

Record = Mapping[str, Any] | None


def at(record: object, *keys: str) -> object:
    """``record[k1][k2]...``, or None where a level is missing or not an object."""
    value: object = record
    for key in keys:
        if type(value) is not dict:  # records decode to plain dicts; an ABC check costs 3x
            return None
        value = value.get(key)
    return value


def subject(record: Record) -> object:
    """A follow's subject (a DID)."""
    return at(record, "subject")


def subject_uri(record: Record) -> object:
    """The URI of a like's or a repost's subject (a strong reference)."""
    return at(record, "subject", "uri")


def reply_parent_uri(record: Record) -> object:
    return at(record, "reply", "parent", "uri")


def quoted_uri(record: Record) -> object:
    """The URI of the record a post quotes (see ``embedded_uri``)."""
    return embedded_uri(at(record, "embed"))


def embedded_uri(embed: object) -> object:
    """The URI of the record an embed holds: ``record`` of an ``app.bsky.embed.record``, or the
    record inside an ``app.bsky.embed.recordWithMedia``; None for other embeds."""
    kind = at(embed, "$type")
    if kind == EMBED_RECORD:
        return at(embed, "record", "uri")
    if kind == EMBED_RECORD_WITH_MEDIA:
        return at(embed, "record", "record", "uri")
    return None


def authority(uri: object) -> str | None:
    """The authority of something shaped like an AT-URI, before any strict check."""
    if not isinstance(uri, str) or not uri.startswith("at://"):
        return None
    return uri[5:].split("/", 1)[0]


def is_post_of(uri: object, dids: frozenset[str]) -> bool:
    """True when ``uri`` claims to be a post by one of ``dids`` (its rkey is checked when it
    becomes a path component: a claim with a bad one is rejected, not passed over)."""
    found = authority(uri)
    if found is None or found not in dids:
        return False
    parts = str(uri)[5:].split("/")
    return len(parts) > 1 and parts[1] == POST


def rkey_of(uri: object, collection: str | None = None) -> str | None:
    """The rkey of ``at://authority/collection/rkey`` when it is a valid record key (and, if
    given, the collection matches)."""
    if not isinstance(uri, str) or not uri.startswith("at://"):
        return None
    parts = uri[5:].split("/")
    if len(parts) != 3 or (collection is not None and parts[1] != collection):
        return None
    return parts[2] if is_record_key(parts[2]) else None
