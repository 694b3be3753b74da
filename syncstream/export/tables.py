"""Each dataset's explicit pyarrow schema, and a Table built straight from decoded cache files.

Each cache file is decoded once with msgspec into the fields every dataset shares; the record
itself stays raw JSON (it becomes ``record_json`` as is) and only the fields a dataset adds are
decoded from it, typed where the record is well formed and leniently where it is not. Columns
are plain lists turned into Arrow arrays with the schema's types: no pandas, no per-row dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import pyarrow as pa

from syncstream.export.datasets import NULL, Dataset, FileHead, Kind, decode_head
from syncstream.timestamps import micros

__all__ = ["BATCH_ROWS", "SCHEMAS", "build_table", "schema_of"]

UTC_US = pa.timestamp("us", tz="UTC")
STRINGS = pa.list_(pa.string())

COMMON_FIELDS = [
    pa.field("uri", pa.string(), nullable=False),
    pa.field("cid", pa.string()),
    pa.field("author_did", pa.string(), nullable=False),
    pa.field("rkey", pa.string(), nullable=False),
    pa.field("collection", pa.string(), nullable=False),
    pa.field("operation", pa.string(), nullable=False),
    pa.field("record_type", pa.string(), nullable=False),
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("rev", pa.string()),
    pa.field("event_time", UTC_US),
    pa.field("synctimestamp", UTC_US, nullable=False),
    pa.field("record_json", pa.string()),
]
POST_FIELDS = [
    pa.field("text", pa.string()),
    pa.field("created_at", pa.string()),
    pa.field("langs", STRINGS),
    pa.field("reply_parent_uri", pa.string()),
    pa.field("reply_root_uri", pa.string()),
    pa.field("embed_type", pa.string()),
    pa.field("facets_json", pa.string()),
    pa.field("labels", STRINGS),
    pa.field("tags", STRINGS),
]
LIKE_FIELDS = [
    pa.field("subject_uri", pa.string()),
    pa.field("subject_cid", pa.string()),
    pa.field("created_at", pa.string()),
]
FOLLOW_FIELDS = [
    pa.field("follow_status", pa.string(), nullable=False),
    pa.field("follower_did", pa.string(), nullable=False),
    pa.field("followee_did", pa.string()),
    pa.field("created_at", pa.string()),
]
SCHEMAS: Mapping[Kind, pa.Schema] = {
    "post": pa.schema(COMMON_FIELDS + POST_FIELDS),
    "like": pa.schema(COMMON_FIELDS + LIKE_FIELDS),
    "follow": pa.schema(COMMON_FIELDS + FOLLOW_FIELDS),
}


def schema_of(dataset: Dataset) -> pa.Schema:
    return SCHEMAS[dataset.kind]


# A record's own fields: typed first (one msgspec pass, no per-field checks), and when a record
# does not fit the types, decoded loosely and each field checked on its own.


class _Ref(msgspec.Struct):
    uri: str | None = None
    cid: str | None = None


class _Reply(msgspec.Struct):
    parent: _Ref | None = None
    root: _Ref | None = None


class _Embed(msgspec.Struct):
    type: str | None = msgspec.field(default=None, name="$type")


class _Label(msgspec.Struct):
    val: str | None = None


class _Labels(msgspec.Struct):
    values: list[_Label] | None = None


class _Post(msgspec.Struct):
    text: str | None = None
    createdAt: str | None = None
    langs: list[str] | None = None
    reply: _Reply | None = None
    embed: _Embed | None = None
    facets: msgspec.Raw = NULL
    labels: _Labels | None = None
    tags: list[str] | None = None


class _Subject(msgspec.Struct):
    subject: _Ref | str | None = None
    createdAt: str | None = None


class _LoosePost(msgspec.Struct):
    text: Any = None
    createdAt: Any = None
    langs: Any = None
    reply: Any = None
    embed: Any = None
    facets: msgspec.Raw = NULL
    labels: Any = None
    tags: Any = None


class _LooseSubject(msgspec.Struct):
    subject: Any = None
    createdAt: Any = None


_decode_post = msgspec.json.Decoder(_Post).decode
_decode_subject = msgspec.json.Decoder(_Subject).decode
_decode_loose_post = msgspec.json.Decoder(_LoosePost).decode
_decode_loose_subject = msgspec.json.Decoder(_LooseSubject).decode

_POST_NULLS = (None,) * len(POST_FIELDS)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _strs(value: object) -> list[str] | None:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else None


def _at(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _raw_text(raw: msgspec.Raw) -> str | None:
    data = bytes(raw)
    return None if data == b"null" else data.decode()


def _post_columns(head: FileHead) -> tuple[object, ...]:
    record = head.record
    try:
        post = _decode_post(record)
    except msgspec.DecodeError:  # null, not an object, or a field of another type
        return _loose_post_columns(record)
    reply, embed, labels = post.reply, post.embed, post.labels
    return (
        post.text,
        post.createdAt,
        post.langs,
        None if reply is None or reply.parent is None else reply.parent.uri,
        None if reply is None or reply.root is None else reply.root.uri,
        None if embed is None else embed.type,
        _raw_text(post.facets),
        None if labels is None or labels.values is None else [v.val for v in labels.values if v.val],
        post.tags,
    )


def _loose_post_columns(record: msgspec.Raw) -> tuple[object, ...]:
    try:
        post = _decode_loose_post(record)
    except msgspec.DecodeError:
        return _POST_NULLS
    labels = _at(post.labels, "values")
    return (
        _str(post.text),
        _str(post.createdAt),
        _strs(post.langs),
        _str(_at(post.reply, "parent", "uri")),
        _str(_at(post.reply, "root", "uri")),
        _str(_at(post.embed, "$type")),
        _raw_text(post.facets),
        [v for v in (_str(_at(item, "val")) for item in labels) if v] if isinstance(labels, list) else None,
        _strs(post.tags),
    )


def _subject(record: msgspec.Raw) -> tuple[object, object]:
    """(subject, createdAt) of a like or a follow, each None where absent or mistyped."""
    try:
        found = _decode_subject(record)
        return found.subject, found.createdAt
    except msgspec.DecodeError:
        pass
    try:
        loose = _decode_loose_subject(record)
    except msgspec.DecodeError:
        return None, None
    subject = loose.subject
    if isinstance(subject, dict):
        subject = _Ref(uri=_str(subject.get("uri")), cid=_str(subject.get("cid")))
    return subject, _str(loose.createdAt)


def _like_columns(head: FileHead) -> tuple[object, ...]:
    subject, created = _subject(head.record)
    if isinstance(subject, _Ref):
        return (subject.uri, subject.cid, created)
    return (None, None, created)


def _follow_columns(head: FileHead) -> tuple[object, ...]:
    _, created = _subject(head.record)
    return (head.follow_status, head.author_did, head.subject_did, created)


_EXTRA: Mapping[Kind, Callable[[FileHead], tuple[object, ...]]] = {
    "post": _post_columns,
    "like": _like_columns,
    "follow": _follow_columns,
}


BATCH_ROWS = 512  # rows decoded into Python objects at a time: a row as Arrow is far smaller


def build_table(dataset: Dataset, files: Sequence[bytes]) -> pa.Table:
    """The Table of these cache files, in this order, with the dataset's schema; built a
    record batch of ``BATCH_ROWS`` at a time, so that only that many rows are ever decoded."""
    schema = SCHEMAS[dataset.kind]
    batches = [
        _record_batch(dataset.kind, schema, [decode_head(data) for data in files[i : i + BATCH_ROWS]])
        for i in range(0, len(files), BATCH_ROWS)
    ]
    return pa.Table.from_batches(batches, schema=schema)


def _record_batch(kind: Kind, schema: pa.Schema, heads: list[FileHead]) -> pa.RecordBatch:
    extras = list(map(_EXTRA[kind], heads))
    columns: list[list[Any]] = [
        [h.uri for h in heads],
        [h.cid for h in heads],
        [h.author_did for h in heads],
        [h.rkey for h in heads],
        [h.collection for h in heads],
        [h.operation for h in heads],
        [h.record_type for h in heads],
        [h.seq for h in heads],
        [h.rev for h in heads],
        [h.event_time for h in heads],
        [h.synctimestamp for h in heads],
        [_raw_text(h.record) for h in heads],
        *(list(column) for column in zip(*extras, strict=True)),
    ]
    arrays = [
        pa.array([micros(v) for v in values] if field.type == UTC_US else values, field.type)
        for field, values in zip(schema, columns, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
