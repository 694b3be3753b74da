"""Deletes honoured: when a record is deleted, the content of every version of it is erased
from its table at the export that brings the delete.

A row's content is its ``record_json`` and every column its dataset takes from the record
(``Column.from_record``: a post's text, a like's subject, ...). Erased, those are null; the
row stays as an event (its URI, operation, author, seq, rev and times), and so does the delete
row. The files holding such rows are rewritten and the files they replace vacuumed
(``syncstream.lake.rewrite``, the purge's way), so that no file under the table holds the
content, history included. Whether the delete came in the same run as its create or months
later makes no difference: the erase looks for the deleted URIs in the whole table once the
run is in it.

``--keep-deleted-content`` (a study whose ethics approval covers keeping it) skips the erase;
each table records the choice in its properties (``deleted_content``): ``erased`` while every
export erased, ``kept`` for good once one kept it (what it kept stays).

An erase is idempotent (an erased row has no content to erase again), so the export's recovery
simply runs it again for a recorded run: a crash before its commit leaves the table as it was
(the rerun writes the same file names), a crash after it leaves only the vacuum to do.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import msgspec
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError

from syncstream.errors import SyncstreamError
from syncstream.failpoints import failpoint
from syncstream.lake.delta import COMMIT_ATTEMPTS, Location, location
from syncstream.lake.rewrite import rewrite_files, vacuum
from syncstream.registry.datasets import Dataset
from syncstream.staging import RunCommit, Step
from syncstream.store import KeyKind

__all__ = [
    "DELETED_CONTENT",
    "ErasePlan",
    "content_columns",
    "deleted_content",
    "erase_content",
    "erase_tables",
    "plan_of",
    "record_choice",
]

DELETED_CONTENT = "syncstream.deleted_content"  # the table property: "erased" or "kept"
ERASED, KEPT = "erased", "kept"


def content_columns(dataset: Dataset) -> list[str]:
    """The columns a delete erases: those the dataset takes from the record."""
    return [c.name for c in (*dataset.head_columns, *dataset.columns) if c.from_record]


def deleted_content(where: Location) -> str | None:
    """The table's recorded choice, ``erased`` or ``kept`` (None before any export made one)."""
    table = DeltaTable(where.uri, storage_options=where.storage_options)
    found = table.metadata().configuration.get(DELETED_CONTENT)
    del table
    return found


def record_choice(where: Location, *, keep: bool) -> None:
    """Record in the table's properties whether deleted content is erased or was kept; a
    commit only when the choice changes, retried when another store committed meanwhile."""
    for _ in range(COMMIT_ATTEMPTS):
        table = DeltaTable(where.uri, storage_options=where.storage_options)
        current = table.metadata().configuration.get(DELETED_CONTENT)
        wanted = KEPT if keep or current == KEPT else ERASED
        try:
            if current != wanted:
                table.alter.set_table_properties({DELETED_CONTENT: wanted}, raise_if_not_exists=False)
            return
        except (CommitFailedError, DeltaError):
            continue  # another store's commit won: read the table again
        finally:
            del table
    raise SyncstreamError(f"{where.uri}: recording its deleted_content kept conflicting")


def erase_content(
    where: Location, content: Sequence[str], uris: Collection[str], *, tag: str
) -> tuple[int, int]:
    """Null the content of every row of ``uris`` that is not a delete and still has some, in
    one commit; (rows erased, files rewritten). The vacuum is the caller's next step."""
    import pyarrow as pa  # noqa: PLC0415 (only an export with deletes needs it)
    import pyarrow.compute as pc  # noqa: PLC0415

    wanted = pa.array(sorted(uris), pa.string())
    erased = 0

    def without_content(fragment: Any) -> Any | None:
        nonlocal erased
        keys = fragment.to_table(columns=["uri", "operation"], use_threads=False)
        mask = pc.and_kleene(
            pc.is_in(keys.column("uri"), value_set=wanted), pc.not_equal(keys.column("operation"), "delete")
        )
        if not pc.any(mask).as_py():
            return None
        data = fragment.to_table(use_threads=False)
        present = [name for name in content if name in data.column_names]
        held = pa.array([False] * data.num_rows)
        for name in present:
            held = pc.or_(held, pc.is_valid(data.column(name)))
        mask = pc.fill_null(pc.and_(mask, held), False)
        count = int(pc.sum(mask.cast(pa.int64())).as_py() or 0)
        if count == 0:
            return None  # erased already (a rerun)
        for name in present:
            index = data.schema.get_field_index(name)
            column = data.column(name)
            nulls = pa.nulls(data.num_rows, column.type)
            data = data.set_column(index, data.schema.field(index), pc.if_else(mask, nulls, column))
        erased += count
        return data

    _, _, files = rewrite_files(where, without_content, tag=f"erase{tag}", mark="erase")
    return erased, files


class ErasePlan(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one run's erase does, as the export's main process sends it to the erase helper:
    per table, the URIs its deletes delete and the columns taken from the record."""

    out: str
    tag: str  # the run's claim: a rerun writes the same file names
    tables: dict[str, tuple[list[str], list[str]]]


def erase_tables(plan: ErasePlan) -> tuple[int, int]:
    """Erase, then vacuum, table by table; (rows erased, files rewritten)."""
    rows = files = 0
    for name, (uris, content) in sorted(plan.tables.items()):
        where = location(plan.out, name)
        erased, rewritten = erase_content(where, content, uris, tag=plan.tag)
        rows, files = rows + erased, files + rewritten
        failpoint(Step.CONTENT_ERASED)
        vacuum(where)  # also after a crash between the commit and here: the rerun erases nothing
        failpoint(Step.ERASE_VACUUMED)
    return rows, files


def plan_of(out: str, run: RunCommit, datasets: Mapping[str, Dataset]) -> ErasePlan:
    deleted: dict[str, set[str]] = {}
    for dataset, uri, kind, _, _ in run.keys:
        if kind == KeyKind.DELETE and dataset in run.tables:
            deleted.setdefault(dataset, set()).add(uri)
    tables = {name: (sorted(uris), content_columns(datasets[name])) for name, uris in deleted.items()}
    return ErasePlan(out=out, tag=run.claim, tables=tables)
