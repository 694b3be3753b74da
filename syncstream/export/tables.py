"""Datasets, their explicit pyarrow schemas, and Tables built straight from cache files.

Each cache file is decoded once with msgspec into the fields every dataset shares; the record
itself stays raw JSON (it becomes ``record_json`` as is) and only the fields a dataset adds are
decoded from it. Columns are plain lists turned into Arrow arrays with the schema's types: no
pandas, no per-row dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import msgspec
import pyarrow as pa

from syncstream.handlers import Config
from syncstream.types import HandlerKey, RecordType

__all__ = [
    "DATASETS",
    "DATASET_OF",
    "Dataset",
    "TableBuilder",
    "decode_head",
]

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


_NULL = msgspec.Raw(b"null")


class FileHead(msgspec.Struct, frozen=True):
    """The fields of a cache file that every dataset uses; the record stays raw JSON."""

    uri: str
    cid: str | None
    author_did: str
    rkey: str
    collection: str
    operation: str
    record_type: str
    seq: int
    rev: str
    event_time: str
    synctimestamp: str
    follow_status: str | None = None
    subject_did: str | None = None
    record: msgspec.Raw = _NULL  # msgspec takes Raw alone, not in a union: null stays b"null"


decode_head = msgspec.json.Decoder(FileHead).decode


class _PostFields(msgspec.Struct):
    text: Any = None
    createdAt: Any = None
    langs: Any = None
    reply: Any = None
    embed: Any = None
    facets: msgspec.Raw = _NULL
    labels: Any = None
    tags: Any = None


class _SubjectFields(msgspec.Struct):
    subject: Any = None
    createdAt: Any = None


_decode_post = msgspec.json.Decoder(_PostFields).decode
_decode_subject = msgspec.json.Decoder(_SubjectFields).decode


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


def _is_null(raw: msgspec.Raw) -> bool:
    return bytes(raw) == b"null"


def _post_columns(record: msgspec.Raw) -> tuple[object, ...]:
    if _is_null(record):
        return (None,) * len(POST_FIELDS)
    try:
        post = _decode_post(record)
    except msgspec.DecodeError:
        return (None,) * len(POST_FIELDS)
    labels = _at(post.labels, "values")
    return (
        _str(post.text),
        _str(post.createdAt),
        _strs(post.langs),
        _str(_at(post.reply, "parent", "uri")),
        _str(_at(post.reply, "root", "uri")),
        _str(_at(post.embed, "$type")),
        None if _is_null(post.facets) else bytes(post.facets).decode(),
        [v for v in (_str(_at(item, "val")) for item in labels) if v] if isinstance(labels, list) else None,
        _strs(post.tags),
    )


def _like_columns(record: msgspec.Raw) -> tuple[object, ...]:
    if _is_null(record):
        return (None, None, None)
    try:
        like = _decode_subject(record)
    except msgspec.DecodeError:
        return (None, None, None)
    return (_str(_at(like.subject, "uri")), _str(_at(like.subject, "cid")), _str(like.createdAt))


def _follow_columns(head: FileHead) -> tuple[object, ...]:
    created: str | None = None
    if not _is_null(head.record):
        try:
            created = _str(_decode_subject(head.record).createdAt)
        except msgspec.DecodeError:
            created = None
    return (head.follow_status, head.author_did, head.subject_did, created)


class Dataset(Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One Parquet dataset: ``{out}/{service}/{record_type}/partition_date=YYYY-MM-DD/``."""

    service: str
    record_type: str
    keys: tuple[HandlerKey, ...]
    schema: pa.Schema
    extra: Callable[[FileHead], tuple[object, ...]]

    @property
    def name(self) -> str:
        return f"{self.service}/{self.record_type}"


def _dataset(
    service: str,
    record_type: RecordType,
    extra_fields: list[pa.Field],
    extra: Callable[[FileHead], tuple[object, ...]],
) -> Dataset:
    keys = tuple(
        k
        for k in HandlerKey
        if k.record_type == record_type and (k.service.value == service or record_type == RecordType.FOLLOW)
    )
    return Dataset(
        service=service,
        record_type=record_type.value,
        keys=keys,
        schema=pa.schema(COMMON_FIELDS + extra_fields),
        extra=extra,
    )


def _post(head: FileHead) -> tuple[object, ...]:
    return _post_columns(head.record)


def _like(head: FileHead) -> tuple[object, ...]:
    return _like_columns(head.record)


DATASETS: tuple[Dataset, ...] = (
    _dataset("study_user_activity", RecordType.POST, POST_FIELDS, _post),
    _dataset("study_user_activity", RecordType.LIKE, LIKE_FIELDS, _like),
    _dataset("study_user_activity", RecordType.LIKE_ON_USER_POST, LIKE_FIELDS, _like),
    _dataset("study_user_activity", RecordType.REPLY_TO_USER_POST, POST_FIELDS, _post),
    _dataset("scraped_user_social_network", RecordType.FOLLOW, FOLLOW_FIELDS, _follow_columns),
    _dataset("in_network_user_activity", RecordType.POST, POST_FIELDS, _post),
)
DATASET_OF: Mapping[HandlerKey, Dataset] = {key: dataset for dataset in DATASETS for key in dataset.keys}


def partition_date(synctimestamp: str) -> str:
    """The UTC date of a writer timestamp (always ``YYYY-MM-DDT...Z``, written by us)."""
    return synctimestamp[:10]


def _timestamps(values: list[str | None]) -> pa.Array:
    strings = pa.array(values, pa.string())
    try:
        return strings.cast(UTC_US)
    except pa.ArrowInvalid:  # an unusual relay time: parse one by one, null when unparseable
        parsed: list[datetime | None] = []
        for value in values:
            try:
                parsed.append(None if value is None else datetime.fromisoformat(value))
            except ValueError:
                parsed.append(None)
        return pa.array(parsed, UTC_US)


class TableBuilder:
    """Collects the decoded files of one dataset (one partition) and turns them into Arrow
    record batches every ``BATCH_ROWS`` rows, so that Python objects never pile up: a row
    held as Arrow costs about a tenth of its decoded Python form."""

    BATCH_ROWS = 256

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.batches: list[pa.RecordBatch] = []
        self.pending: list[FileHead] = []
        self.rows = 0

    def __len__(self) -> int:
        return self.rows

    def add(self, head: FileHead) -> None:
        self.pending.append(head)
        self.rows += 1
        if len(self.pending) >= self.BATCH_ROWS:
            self.batches.append(self._batch(self.pending))
            self.pending = []

    def table(self, keep: Iterable[int] | None = None) -> pa.Table:
        """The Table of the rows added (only the rows at ``keep``, ascending, when given)."""
        if self.pending:
            self.batches.append(self._batch(self.pending))
            self.pending = []
        table = pa.Table.from_batches(self.batches, schema=self.dataset.schema)
        if keep is None:
            return table
        indices = list(keep)
        return table if len(indices) == table.num_rows else table.take(pa.array(indices, pa.int64()))

    def _batch(self, heads: list[FileHead]) -> pa.RecordBatch:
        records = [None if _is_null(h.record) else bytes(h.record).decode() for h in heads]
        common: list[list[Any]] = [
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
            records,
        ]
        extras = [list(column) for column in zip(*map(self.dataset.extra, heads), strict=True)]
        arrays = []
        for field, values in zip(self.dataset.schema, common + extras, strict=True):
            if field.type == UTC_US:
                arrays.append(_timestamps(values))
            else:
                arrays.append(pa.array(values, field.type))
        return pa.RecordBatch.from_arrays(arrays, schema=self.dataset.schema)
