"""The study's record as tables: ``collection/coverage`` (what relay seqs each writer run
processed, and what it knows it lost) and ``population/membership`` (who was in the population
from which seq to which), both derived from the state store, where the writer records them with
its cursor.

Their rows change: a covered run grows and a spell closes while the study runs. So rather than
append rows once, each export **replaces this store's rows** with the state's record, in one
commit per table that replaces the store's rows (a predicate overwrite of ``store = {id}``:
each file holds one store's rows, so whole files are swapped), under the application
transaction of the store. A reader sees one whole record or the one before; each run and spell
is exactly one row, however often exports ran or crashed, because the table is the state's
record and not a sum of increments. The digest of the rows last committed is kept in the state:
an export whose record did not change commits nothing, and one killed before noting it
replaces the same rows again. The files a commit replaced are vacuumed at once, so no file under
the table holds a row its current version does not, which a purge needs: the tables keep no
history of earlier versions. Several stores (shards) share the tables, each replacing only its
own rows. Both are unpartitioned (a row per writer run and gap; a row per account and spell),
so no glob of date partitions picks their files up. delta-rs writes the Parquet from arro3
arrays: the export's own process never imports pyarrow.

Written for Delta outputs only: a plain-Parquet output has no atomic replace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from deltalake import CommitProperties, DeltaTable, Field, Schema, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.schema import PrimitiveType

from syncstream.errors import SyncstreamError
from syncstream.failpoints import failpoint
from syncstream.lake.delta import COMMIT_ATTEMPTS, Location, is_table, location
from syncstream.staging import Step
from syncstream.store import source_name
from syncstream.timestamps import micros

if TYPE_CHECKING:
    from syncstream.store import StateStore

__all__ = ["COVERAGE", "MEMBERSHIP", "RECORD_TABLES", "erase_accounts", "record_rows", "write_study_record"]

COVERAGE = "collection/coverage"
MEMBERSHIP = "population/membership"

# Each table's columns: (name, Delta type, nullable).
_COLUMNS: Mapping[str, tuple[tuple[str, str, bool], ...]] = {
    COVERAGE: (
        ("kind", "string", False),
        ("first_seq", "long", True),
        ("last_seq", "long", True),
        ("first_time", "timestamp", True),
        ("last_time", "timestamp", True),
        ("reason", "string", False),
        ("source", "string", False),
        ("frames", "long", False),
        ("writer_run", "string", False),
        ("store", "string", False),
    ),
    MEMBERSHIP: (
        ("did", "string", True),  # null: a withdrawn account's spell, of which a count stays
        ("role", "string", False),
        ("from_seq", "long", True),
        ("to_seq", "long", True),
        ("from_time", "timestamp", True),
        ("to_time", "timestamp", True),
        ("how", "string", True),
        ("left_how", "string", True),
        ("source", "string", True),
        ("store", "string", False),
    ),
}
RECORD_TABLES: Mapping[str, str | None] = {COVERAGE: None, MEMBERSHIP: "did"}
"""The study-record tables and the column of the account a row belongs to (a purge's)."""
_STATS = {COVERAGE: "first_seq,last_seq", MEMBERSHIP: "from_seq,to_seq"}  # never a DID in the log


def _micros(text: str | None) -> int | None:
    return None if text is None else micros(text)


def record_rows(state: StateStore, name: str) -> list[tuple[Any, ...]]:
    """The rows of table ``name`` that this store's state holds now, in its column order
    (times as microseconds since the epoch)."""
    store = state.exports.store_id()
    if name == COVERAGE:
        return [
            (r.kind.value, r.first_seq, r.last_seq, _micros(r.first_time), _micros(r.last_time),
             r.reason.value, source_name(r.source), r.frames, r.writer_run, store)
            for r in state.coverage.runs()
        ]  # fmt: skip
    rows: list[tuple[Any, ...]] = [
        (s.did, s.role.value, s.from_seq, s.to_seq, _micros(s.from_time), _micros(s.to_time),
         s.how.value, None if s.left_how is None else s.left_how.value, source_name(s.source), store)
        for s in state.membership.spells()
    ]  # fmt: skip
    for withdrawal in state.membership.withdrawals():
        at = int(withdrawal.withdrawn_at * 1_000_000)
        row = (None, withdrawal.role.value, None, None, None, at, None, withdrawal.reason.value, None, store)
        rows += [row] * withdrawal.accounts
    return rows


def write_study_record(out: str, state: StateStore, *, existing_only: bool = False) -> int:
    """Replace this store's rows of both tables under ``out`` with the state's record; how
    many commits that took (none for a table that holds them already). ``existing_only``
    (a purge): only tables that exist already."""
    store = state.exports.store_id()
    commits = 0
    for name in (COVERAGE, MEMBERSHIP):
        where = location(out, name)
        if existing_only and not is_table(where):
            continue
        commits += _replace(state, where, name, record_rows(state, name), store)
    return commits


def _schema(name: str) -> Schema:
    return Schema(
        [Field(column, PrimitiveType(kind), nullable=nullable) for column, kind, nullable in _COLUMNS[name]]
    )


def _open(where: Location, name: str) -> DeltaTable:
    for _ in range(COMMIT_ATTEMPTS):
        try:
            return DeltaTable(where.uri, storage_options=where.storage_options)
        except TableNotFoundError:
            pass
        try:
            return DeltaTable.create(
                where.uri,
                _schema(name),
                mode="ignore",
                storage_options=where.storage_options,
                configuration={"delta.dataSkippingStatsColumns": _STATS[name]},
            )
        except CommitFailedError:
            continue  # another store created it meanwhile
    raise SyncstreamError(f"cannot open or create the table {where.uri}")


def _replace(
    state: StateStore, where: Location, name: str, rows: Sequence[tuple[Any, ...]], store: str
) -> int:
    """Replace the store's rows of the table with ``rows`` in one commit (delta-rs writes
    the Parquet: no pyarrow in the export's process), then vacuum what it replaced."""
    digest = int.from_bytes(hashlib.sha256(msgspec.json.encode(rows)).digest()[:6], "big")  # exact as a REAL
    if state.exports.record_digest(name) == digest and is_table(where):
        return 0
    table = _open(where, name)
    version = (table.transaction_version(store) or 0) + 1
    for _ in range(COMMIT_ATTEMPTS):
        try:
            write_deltalake(
                table,
                _arrow(name, rows),
                mode="overwrite",
                predicate=f"store = '{store}'",
                commit_properties=CommitProperties(app_transactions=[Transaction(store, version)]),
            )
            break
        except CommitFailedError:
            table = _open(where, name)  # another store's commit came first: read the table again
    else:
        raise SyncstreamError(f"{name}: the commit kept conflicting ({COMMIT_ATTEMPTS} attempts)")
    failpoint(Step.RECORD_COMMITTED)
    _vacuum(where)
    failpoint(Step.RECORD_WRITTEN)
    state.exports.set_record_digest(name, digest)
    return 1


def _arrow(name: str, rows: Sequence[tuple[Any, ...]]) -> Any:
    """The rows as an Arrow table (arro3: the export's own process imports no pyarrow)."""
    from arro3.core import Array, DataType, Table  # noqa: PLC0415
    from arro3.core import Field as ArrowField  # noqa: PLC0415
    from arro3.core import Schema as ArrowSchema  # noqa: PLC0415

    columns = _COLUMNS[name]
    timestamp = DataType.timestamp("us", tz="UTC")
    arrays = []
    fields = []
    for i, (column, kind, nullable) in enumerate(columns):
        values = [row[i] for row in rows]
        if kind == "timestamp":
            arrays.append(Array(values, DataType.int64()).cast(timestamp))
            fields.append(ArrowField(column, timestamp, nullable))
        else:
            arrow_type = DataType.int64() if kind == "long" else DataType.string()
            arrays.append(Array(values, arrow_type))
            fields.append(ArrowField(column, arrow_type, nullable))
    return Table.from_arrays(arrays, schema=ArrowSchema(fields))


def _vacuum(where: Location) -> None:
    """Remove every file the log marks removed (those this commit replaced), now: no file
    under the table holds a row its current version does not (a purge needs that)."""
    table = DeltaTable(where.uri, storage_options=where.storage_options)
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    del table


def erase_accounts(out: str, dids: Collection[str]) -> int:
    """Remove the accounts' rows from every store's rows in ``population/membership``
    (this store's own come from its state: ``write_study_record`` first; another store sharing
    the output still holds them): each store's rows that hold one are replaced without them (that
    store's next export replaces it with its own record), then what was replaced is vacuumed.
    How many rows went. (A purge's part: it may import pyarrow.)"""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    where = location(out, MEMBERSHIP)
    if not is_table(where):
        return 0
    table = DeltaTable(where.uri, storage_options=where.storage_options)
    data = table.to_pyarrow_dataset().to_table(use_threads=False)
    drop = pc.fill_null(pc.is_in(data.column("did"), value_set=pa.array(sorted(dids), pa.string())), False)
    removed = int(pc.sum(drop.cast(pa.int64())).as_py() or 0)
    for store in sorted(set(data.filter(drop).column("store").to_pylist())):
        kept = data.filter(pc.and_(pc.invert(drop), pc.equal(data.column("store"), store)))
        write_deltalake(
            table,
            kept,
            mode="overwrite",
            predicate=f"store = '{store}'",
            commit_properties=CommitProperties(custom_metadata={"syncstream": "purge"}),
        )
    del table
    if removed:
        _vacuum(where)
    return removed
