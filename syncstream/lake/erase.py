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

import subprocess
import sys
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import msgspec
from deltalake import DeltaTable

from syncstream.errors import HelperError
from syncstream.failpoints import failpoint, set_process
from syncstream.lake.delta import Location, location
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
    "erase_run",
    "erase_tables",
    "plan_of",
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


def _record_choice(where: Location, *, keep: bool) -> None:
    table = DeltaTable(where.uri, storage_options=where.storage_options)
    current = table.metadata().configuration.get(DELETED_CONTENT)
    wanted = KEPT if keep or current == KEPT else ERASED
    if current != wanted:  # a metadata commit: only when the choice changes
        table.alter.set_table_properties({DELETED_CONTENT: wanted}, raise_if_not_exists=False)
    del table


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


def erase_run(out: str, run: RunCommit, datasets: Mapping[str, Dataset], *, inline: bool) -> int:
    """After a run's tables are committed: record the choice in each of them and, unless the
    run keeps deleted content, erase the content of what the run deleted, then vacuum; the rows
    erased. Run again for the same run (recovery), it finishes what is left.

    The erase reads and writes Parquet, so it needs pyarrow, which the export's main process
    never imports: unless ``inline`` (the command runs with ``--inline-parquet`` and has it
    already), it runs in a helper process of its own, ``python -m syncstream.lake.erase``, started
    only for a run with deletes."""
    keep = run.keep_deleted_content
    for name in sorted(run.tables):
        _record_choice(location(out, name), keep=keep)
    plan = plan_of(out, run, datasets)
    if keep or not plan.tables:
        return 0
    if inline:
        return erase_tables(plan)[0]
    done = subprocess.run(
        [sys.executable, "-m", "syncstream.lake.erase"],
        input=_encode(plan),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise HelperError(f"erasing deleted records' content failed ({last}); the next export finishes it")
    rows, _ = msgspec.json.decode(done.stdout, type=tuple[int, int])
    return rows


_encode = msgspec.json.Encoder().encode


def _main() -> None:
    set_process("erase-helper")
    from syncstream.export.arrow import spare_pyarrow_the_pandas_import  # noqa: PLC0415

    spare_pyarrow_the_pandas_import()
    plan = msgspec.json.decode(sys.stdin.buffer.read(), type=ErasePlan)
    sys.stdout.buffer.write(_encode(erase_tables(plan)))


if __name__ == "__main__":
    _main()
