"""The export's datasets and the head of a cache file: what the exactly-once protocol needs to
know of a file, without pyarrow (the export's main process never imports it).

A dataset is ``{out}/{service}/{record_type}/partition_date=YYYY-MM-DD/``; ``kind`` names its
columns beyond the common ones (``syncstream.export.tables`` has the schemas).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import msgspec

from syncstream.config import Config
from syncstream.types import HandlerKey, RecordType

__all__ = [
    "DATASETS",
    "DATASET_NAMED",
    "DATASET_OF",
    "Dataset",
    "FileHead",
    "decode_head",
    "partition_date",
]

NULL = msgspec.Raw(b"null")


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
    record: msgspec.Raw = NULL  # msgspec takes Raw alone, not in a union: null stays b"null"


decode_head = msgspec.json.Decoder(FileHead).decode

Kind = Literal["post", "like", "follow"]


class Dataset(Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    service: str
    record_type: str
    kind: Kind
    keys: tuple[HandlerKey, ...]

    @property
    def name(self) -> str:
        return f"{self.service}/{self.record_type}"


def _dataset(service: str, record_type: RecordType, kind: Kind) -> Dataset:
    keys = tuple(
        k
        for k in HandlerKey
        if k.record_type == record_type and (k.service.value == service or record_type == RecordType.FOLLOW)
    )
    return Dataset(service=service, record_type=record_type.value, kind=kind, keys=keys)


DATASETS: tuple[Dataset, ...] = (
    _dataset("study_user_activity", RecordType.POST, "post"),
    _dataset("study_user_activity", RecordType.LIKE, "like"),
    _dataset("study_user_activity", RecordType.LIKE_ON_USER_POST, "like"),
    _dataset("study_user_activity", RecordType.REPLY_TO_USER_POST, "post"),
    _dataset("scraped_user_social_network", RecordType.FOLLOW, "follow"),
    _dataset("in_network_user_activity", RecordType.POST, "post"),
)
DATASET_OF: Mapping[HandlerKey, Dataset] = {key: dataset for dataset in DATASETS for key in dataset.keys}
DATASET_NAMED: Mapping[str, Dataset] = {dataset.name: dataset for dataset in DATASETS}


def partition_date(synctimestamp: str) -> str:
    """The UTC date of a writer timestamp (always ``YYYY-MM-DDT...Z``, written by us)."""
    return synctimestamp[:10]
