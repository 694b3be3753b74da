"""The current state of a dataset: the latest version of each record that is not deleted.

A table holds every version of a record as a row of its own (a create, each update, the
delete), so a reader who wants "what exists now" must pick, per record, its latest row and drop
the record when that row is a delete. ``current_records`` does it once, right: a record is its
URI (and, in the follow table, its ``follow_status``: a follow between two study users is a
row of each); its versions are ordered by ``rev`` (the commit's TID, which only grows within
an account's repository), then by when the writer received them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from syncstream.errors import ConfigError
from syncstream.lake.delta import location

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["current_records"]

_ORDER = ("rev", "synctimestamp", "seq")  # a version's place among its record's versions


def current_records(out: str, dataset: str, *, storage_options: Mapping[str, str] | None = None) -> pa.Table:
    """The latest version of each record of ``dataset`` (``"service/record_type"``) in the
    export's output ``out`` (a directory, or a URI such as ``s3://bucket/prefix?endpoint_override=...``,
    as ``export --out`` takes it) that is not deleted: a pyarrow Table with the dataset's
    columns. ``storage_options`` are added to those the URI gives (delta-rs' names, such as
    ``AWS_REGION``). ``ConfigError`` when there is no such table."""
    import pyarrow as pa  # noqa: PLC0415 (a reader's function: the commands never need it)
    import pyarrow.compute as pc  # noqa: PLC0415

    where = location(out, dataset)
    options = {**where.storage_options, **(storage_options or {})}
    try:
        table = DeltaTable(where.uri, storage_options=options)
    except TableNotFoundError:
        raise ConfigError(f"no table of {dataset} at {where.uri}") from None
    rows = table.to_pyarrow_dataset().to_table(use_threads=False)
    del table
    if rows.num_rows == 0:
        return rows
    names = rows.column_names
    keys = ["uri", *(["follow_status"] if "follow_status" in names else [])]
    # a version without a rev (or seq) sorts first: it is no later than one that has one
    order = [(name, "ascending", "at_start") for name in (*keys, *(n for n in _ORDER if n in names))]
    rows = rows.take(pc.sort_indices(rows, sort_keys=order))
    record = rows.column("uri")
    if "follow_status" in names:
        record = pc.binary_join_element_wise(
            record, pc.fill_null(rows.column("follow_status"), ""), "\x00", null_handling="replace"
        )
    record = record.combine_chunks()
    # A row is its record's latest when the next row is another record's (or there is none).
    latest = pa.concat_arrays([pc.not_equal(record[:-1], record[1:]), pa.array([True])])
    alive = pc.not_equal(rows.column("operation"), "delete").combine_chunks()
    return rows.filter(pc.and_(latest, alive))
