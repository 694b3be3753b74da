"""AT Protocol identifier syntax: DID, handle, NSID, record key, TID, AT-URI.

Plain predicates (bools, no allocation: they run on the hot path) and ``parse_at_uri``; the
boundaries that report a bad value (user files: ``syncstream.users``) wrap them in Results.
The rules follow the atproto specification and are pinned by the interop fixtures.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "AtUri",
    "is_cid",
    "is_did",
    "is_handle",
    "is_nsid",
    "is_record_key",
    "is_tid",
    "parse_at_uri",
]

_DID = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")
_DID_MAX = 2048
_HANDLE = re.compile(
    r"([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
)
_HANDLE_MAX = 253
_NSID = re.compile(
    r"[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+"
    r"\.[a-zA-Z][a-zA-Z0-9]{0,62}"
)
_NSID_MAX = 317
_RKEY = re.compile(r"[a-zA-Z0-9._:~-]{1,512}")
_CID = re.compile(r"[a-zA-Z0-9]{8,256}")  # a multibase CID string (base32 'b...', base58 'Qm...')
_TID = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}")
_FRAGMENT = re.compile(r"/[a-zA-Z0-9._~:@!$&%')(*+,;=\-\[\]/\\]*")
_AT_URI_MAX = 8 * 1024


def is_did(value: str) -> bool:
    return len(value) <= _DID_MAX and _DID.fullmatch(value) is not None


def is_handle(value: str) -> bool:
    return len(value) <= _HANDLE_MAX and _HANDLE.fullmatch(value) is not None


def is_nsid(value: str) -> bool:
    return len(value) <= _NSID_MAX and _NSID.fullmatch(value) is not None


def is_record_key(value: str) -> bool:
    # "." and ".." match the character class but are path traversal, and the spec forbids them.
    return value not in (".", "..") and _RKEY.fullmatch(value) is not None


def is_cid(value: object) -> bool:
    """Shaped like a CID string: it names an update's file, so it must be a safe name."""
    return isinstance(value, str) and _CID.fullmatch(value) is not None


def is_tid(value: str) -> bool:
    return _TID.fullmatch(value) is not None


class AtUri(NamedTuple):
    authority: str
    collection: str | None
    rkey: str | None


def parse_at_uri(value: str) -> AtUri | None:
    """The parts of a valid AT-URI (Lexicon-strict: record keys must be valid), else None."""
    if len(value) > _AT_URI_MAX or not value.startswith("at://"):
        return None
    rest, hash_, fragment = value[5:].partition("#")
    if hash_ and _FRAGMENT.fullmatch(fragment) is None:
        return None
    parts = rest.split("/")
    if len(parts) > 3:
        return None
    authority = parts[0]
    if not (is_did(authority) or is_handle(authority)):
        return None
    collection = parts[1] if len(parts) > 1 else None
    if collection is not None and not is_nsid(collection):
        return None
    rkey = parts[2] if len(parts) > 2 else None
    if rkey is not None and not is_record_key(rkey):
        return None
    return AtUri(authority, collection, rkey)
