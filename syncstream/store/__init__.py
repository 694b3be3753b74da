"""The state store (SQLite, WAL), split by concern: the population, the cursors, the
cached-URI index, the backfills, the purges, the export's bookkeeping and the catalog of the
copies made outside the store, each a module, one ``StateStore`` opening the connection they
share (``with StateStore(path) as state:``). The columns' words are enums (``kinds``), the
layout and its migrations in ``layout``."""

from __future__ import annotations

from syncstream.store.backfills import Backfill
from syncstream.store.catalog import OutputEntry, RecordEntry, ScratchEntry, SnapshotEntry
from syncstream.store.cursors import CURSOR, relay_cursor
from syncstream.store.exports import ExportKey, export_key
from syncstream.store.kinds import BackfillStatus, KeyKind, PurgeReason, UserKind, WriterKind
from syncstream.store.layout import VERSION
from syncstream.store.purges import PurgeRecord
from syncstream.store.state import StateStore

__all__ = [
    "CURSOR",
    "VERSION",
    "Backfill",
    "BackfillStatus",
    "ExportKey",
    "KeyKind",
    "OutputEntry",
    "PurgeReason",
    "PurgeRecord",
    "RecordEntry",
    "ScratchEntry",
    "SnapshotEntry",
    "StateStore",
    "UserKind",
    "WriterKind",
    "export_key",
    "relay_cursor",
]
