"""What one cache file holds, and the codec that writes and reads it.

A cache file is the JSON encoding of one ``CachedRecord``. The full AT Protocol record is kept
in the JSON data model (CID links as ``{"$link": ...}``, bytes as ``{"$bytes": ...}``) so that
nothing is lost before export; deletes carry the same metadata with ``record`` null.
"""

from __future__ import annotations

from typing import Any

import msgspec

from syncstream.registry.types import FollowStatus, Operation

__all__ = ["BACKFILL", "CachedRecord", "decode_record", "encode_record"]


class CachedRecord(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    uri: str
    cid: str | None
    author_did: str
    rkey: str
    collection: str
    operation: Operation
    record_type: str  # the handler's (``RecordType`` for the built-in ones)
    seq: int | None  # None for a record backfilled from its repository
    rev: str
    event_time: str  # the commit's ``time``, as the relay sent it
    synctimestamp: str  # UTC time the writer received the event, ISO 8601 with microseconds
    follow_status: FollowStatus | None = None
    nested_key: str | None = None  # the directory the file is nested under, if any
    subject_did: str | None = None  # a follow's subject
    record: dict[str, Any] | None = None
    source: str = "firehose"  # or BACKFILL: read from the account's repository
    verified: bool | None = None  # the commit's signature checked (True), or not checked (None)


BACKFILL = "backfill"  # the source of a record read from its account's repository

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CachedRecord)

encode_record = _encoder.encode
decode_record = _decoder.decode
