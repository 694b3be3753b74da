"""The study's record as tables: ``collection/coverage`` (what relay seqs each writer run
processed, and what it knows it lost) and ``population/membership`` (who was in the population
from which seq to which), both derived from the state store, where the writer records them with
its cursor.

Their rows change: a covered run grows and a spell closes while the study runs. So rather than
append rows once, each export **replaces this store's rows** with the state's current record,
in one commit per table that removes the store's previous file and adds the new one, under the
application transaction of the store. A reader sees one whole record or the one before; each
run and spell is exactly one row, however often exports ran or crashed, because the table is
the state's record and not a sum of increments. The file is named after its content
(``{store}-{sha256}.parquet``): an export that finds the table holding that file commits nothing,
and a rerun after a crash rewrites the same bytes under the same name. The files a commit
replaced (and any a crash left uncommitted) are removed at once, by the store that wrote them,
so no file under the table holds a row the current version does not, which a purge needs: the
tables keep no history of earlier versions. Several stores (shards) share the tables, each
replacing only its own file. Both are unpartitioned: they are small (a row per writer run and
gap; a row per account and spell).

Written for Delta outputs only: a plain-Parquet output has no atomic replace.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from deltalake import CommitProperties, DeltaTable, Field, Schema, Transaction
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.schema import PrimitiveType
from deltalake.transaction import AddAction, RemoveAction

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
        commits += _replace(out, where, name, record_rows(state, name), store)
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


def _replace(out: str, where: Location, name: str, rows: Sequence[tuple[Any, ...]], store: str) -> int:
    digest = hashlib.sha256(msgspec.json.encode(rows)).hexdigest()[:32]
    file_name = f"{store}-{digest}.parquet"
    made = 0
    written = False
    for _ in range(COMMIT_ATTEMPTS):
        table = _open(where, name)
        own = [base for base in map(posixpath.basename, table.file_uris()) if base.startswith(f"{store}-")]
        if own == [file_name]:
            break
        if not written:
            size = _write(out, name, file_name, rows)
            written = True
            failpoint(Step.RECORD_WRITTEN)
        now = int(time.time() * 1000)
        actions: list[AddAction | RemoveAction] = [RemoveAction(path, True, now, None, {}) for path in own]
        actions.append(
            AddAction(file_name, size, {}, now, True, msgspec.json.encode({"numRecords": len(rows)}).decode())
        )
        version = (table.transaction_version(store) or 0) + 1
        try:
            table.create_write_transaction(
                actions,
                "append",
                table.schema(),
                commit_properties=CommitProperties(app_transactions=[Transaction(store, version)]),
            )
        except CommitFailedError:
            continue  # another store's commit came first: read the table again
        made = 1
        failpoint(Step.RECORD_COMMITTED)
        break
    else:
        raise SyncstreamError(f"{name}: the commit kept conflicting ({COMMIT_ATTEMPTS} attempts)")
    _remove_strays(out, name, store, file_name)
    return made


def _write(out: str, name: str, file_name: str, rows: Sequence[tuple[Any, ...]]) -> int:
    """Write the rows as the table's Parquet file (a local one under a dot-prefixed temporary
    name first, then renamed: never half a file under its name); its size."""
    import pyarrow as pa  # noqa: PLC0415 (only when the record changed)
    import pyarrow.parquet as pq  # noqa: PLC0415

    from syncstream.lake.storage import storage_for  # noqa: PLC0415

    columns = _COLUMNS[name]
    types = {"string": pa.string(), "long": pa.int64(), "timestamp": pa.timestamp("us", tz="UTC")}
    schema = pa.schema(
        [pa.field(column, types[kind], nullable=nullable) for column, kind, nullable in columns]
    )
    arrays = [pa.array([row[i] for row in rows], schema.field(i).type) for i in range(len(columns))]
    table = pa.Table.from_arrays(arrays, schema=schema)
    storage = storage_for(out)
    directory = f"{storage.base}/{name}"
    storage.filesystem.create_dir(directory, recursive=True)
    path = f"{directory}/{file_name}"
    local = type(storage.filesystem).__name__ == "LocalFileSystem"
    target = f"{directory}/.{file_name}.tmp" if local else path
    pq.write_table(table, target, filesystem=storage.filesystem, compression="zstd")
    if local:
        storage.filesystem.move(target, path)
    size: int = storage.filesystem.get_file_info(path).size
    return size


def _remove_strays(out: str, name: str, store: str, keep: str) -> None:
    """Remove this store's files of the table other than ``keep``: those its commit replaced,
    and any a crash left unnamed by the log (no other store writes a file of this name)."""
    from syncstream.lake.storage import storage_for  # noqa: PLC0415

    storage = storage_for(out)
    import pyarrow.fs as pafs  # noqa: PLC0415

    selector = pafs.FileSelector(f"{storage.base}/{name}", recursive=False, allow_not_found=True)
    for info in storage.filesystem.get_file_info(selector):
        base = info.base_name
        mine = base.startswith((f"{store}-", f".{store}-"))
        if info.type == pafs.FileType.File and mine and base != keep:
            storage.filesystem.delete_file(info.path)


def erase_accounts(out: str, dids: Collection[str], *, purge_id: str) -> int:
    """Remove the accounts' rows from every store's file of ``population/membership`` (this
    store's own come from its state: ``write_study_record`` first; another store sharing the
    output still holds them): each file that has one is rewritten without it, under its store's
    name (``{store}-p{purge_id}.parquet``, which that store's next export replaces), in one
    commit, and what the commit replaced is vacuumed. How many rows went."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    where = location(out, MEMBERSHIP)
    if not is_table(where):
        return 0
    wanted = pa.array(sorted(dids), pa.string())
    for _ in range(COMMIT_ATTEMPTS):
        table = DeltaTable(where.uri, storage_options=where.storage_options)
        dataset = table.to_pyarrow_dataset()
        now = int(time.time() * 1000)
        actions: list[AddAction | RemoveAction] = []
        removed = 0
        for fragment in dataset.get_fragments():
            data = fragment.to_table(use_threads=False)
            drop = pc.fill_null(pc.is_in(data.column("did"), value_set=wanted), False)
            count = int(pc.sum(drop.cast(pa.int64())).as_py() or 0)
            if not count:
                continue
            removed += count
            path: str = fragment.path
            store = posixpath.basename(path).rsplit("-", 1)[0]
            target = f"{store}-p{purge_id}.parquet"
            kept = data.filter(pc.invert(drop))
            with fragment.filesystem.open_output_stream(target) as sink:
                pq.write_table(kept, sink, compression="zstd")
            size = fragment.filesystem.get_file_info(target).size
            actions += [
                RemoveAction(path, True, now, None, {}),
                AddAction(target, size, {}, now, True, _stats(kept.num_rows)),
            ]
        if not actions:
            break
        try:
            table.create_write_transaction(
                actions,
                "append",
                table.schema(),
                commit_properties=CommitProperties(custom_metadata={"syncstream": "purge"}),
            )
        except CommitFailedError:
            continue  # a store's export replaced its file meanwhile: look again
        break
    else:
        raise SyncstreamError(
            f"{MEMBERSHIP}: the purge's commit kept conflicting ({COMMIT_ATTEMPTS} attempts)"
        )
    vacuumed = DeltaTable(where.uri, storage_options=where.storage_options)
    vacuumed.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    del vacuumed
    return removed if actions else 0


def _stats(rows: int) -> str:
    return msgspec.json.encode({"numRecords": rows}).decode()
