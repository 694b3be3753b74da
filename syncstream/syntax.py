"""AT Protocol identifier syntax: DID, handle, NSID, record key, TID, AT-URI.

The ``is_*`` predicates are the hot path (plain bools, no allocation); the same checks
wrapped as ``returns`` Results serve the boundaries (user files, library callers).
The rules follow the atproto specification and are pinned by the interop fixtures.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from returns.result import Failure, Result, Success

__all__ = [
    "AtUri",
    "at_uri",
    "did",
    "is_cid",
    "is_did",
    "is_handle",
    "is_nsid",
    "is_record_key",
    "is_tid",
    "nsid",
    "parse_at_uri",
    "record_key",
    "tid",
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


def _checked(kind: str, ok: bool, value: str) -> Result[str, str]:
    return Success(value) if ok else Failure(f"invalid {kind}: {value!r}")


def did(value: str) -> Result[str, str]:
    return _checked("DID", is_did(value), value)


def nsid(value: str) -> Result[str, str]:
    return _checked("NSID", is_nsid(value), value)


def record_key(value: str) -> Result[str, str]:
    return _checked("record key", is_record_key(value), value)


def tid(value: str) -> Result[str, str]:
    return _checked("TID", is_tid(value), value)


def at_uri(value: str) -> Result[AtUri, str]:
    parsed = parse_at_uri(value)
    return Success(parsed) if parsed is not None else Failure(f"invalid AT-URI: {value!r}")
