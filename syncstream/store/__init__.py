"""The state store (SQLite, WAL), split by concern: the population, the cursors, the
cached-URI index, the backfills, the purges, the export's bookkeeping, the catalog of the
copies made outside the store and the study's record (coverage, membership), each a module,
one ``StateStore`` opening the connection they share (``with StateStore(path) as state:``).
The columns' words are enums (``kinds``), the layout and its migrations in ``layout``."""

from __future__ import annotations

from syncstream.store.backfills import Backfill
from syncstream.store.catalog import OutputEntry, RecordEntry, ScratchEntry, SnapshotEntry
from syncstream.store.coverage import CoverageRow, source_name
from syncstream.store.cursors import CURSOR, relay_cursor
from syncstream.store.exports import ExportKey, export_key
from syncstream.store.kinds import (
    BackfillStatus,
    Change,
    CoverageKind,
    CoverageReason,
    KeyKind,
    PurgeReason,
    UserKind,
    WriterKind,
)
from syncstream.store.layout import VERSION
from syncstream.store.membership import Closing, Opening, Spell, Withdrawal
from syncstream.store.purges import PurgeRecord
from syncstream.store.state import StateStore

__all__ = [
    "CURSOR",
    "VERSION",
    "Backfill",
    "BackfillStatus",
    "Change",
    "Closing",
    "CoverageKind",
    "CoverageReason",
    "CoverageRow",
    "ExportKey",
    "KeyKind",
    "Opening",
    "OutputEntry",
    "PurgeReason",
    "PurgeRecord",
    "RecordEntry",
    "ScratchEntry",
    "SnapshotEntry",
    "Spell",
    "StateStore",
    "UserKind",
    "Withdrawal",
    "WriterKind",
    "export_key",
    "relay_cursor",
    "source_name",
]
