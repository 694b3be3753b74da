"""What the tables under an output hold, read from their logs: each table's version, rows,
files and bytes, and its rows by partition day (the add actions' record counts: no data file is
read); and the few column reads that status and the report need (the newest event's time, a
column's values counted), a partition at a time."""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from syncstream.lake.delta import PARTITION, is_table, location

__all__ = ["TableFacts", "column_counts", "newest_event_time", "table_facts"]


class TableFacts(msgspec.Struct, frozen=True, kw_only=True):
    """One table as its log stands: ``rows_by_day`` maps each partition_date to its rows (empty
    for a table with no partition_date: the study record's)."""

    name: str
    version: int
    rows: int
    files: int
    bytes: int
    rows_by_day: dict[str, int]


def table_facts(out: str, names: Iterable[str]) -> dict[str, TableFacts]:
    """The tables among ``names`` that exist under ``out``, by name."""
    found: dict[str, TableFacts] = {}
    for name in sorted(set(names)):
        where = location(out, name)
        if not is_table(where):
            continue
        table = DeltaTable(where.uri, storage_options=where.storage_options)
        actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        version = table.version()
        dated = PARTITION in table.metadata().partition_columns
        del table
        by_day: Counter[str] = Counter()
        for action in actions:
            if dated:
                by_day[str(action.get(f"partition.{PARTITION}"))] += int(action["num_records"] or 0)
        found[name] = TableFacts(
            name=name,
            version=version,
            rows=sum(int(a["num_records"] or 0) for a in actions),
            files=len(actions),
            bytes=sum(int(a["size_bytes"] or 0) for a in actions),
            rows_by_day=dict(sorted(by_day.items())),
        )
    return found


def _read(out: str, name: str, columns: list[str], day: str | None = None) -> pa.Table:
    where = location(out, name)
    table = DeltaTable(where.uri, storage_options=where.storage_options)
    filters = None if day is None else [(PARTITION, "=", day)]
    dataset = table.to_pyarrow_dataset(partitions=filters)
    schema_names = set(dataset.schema.names)
    rows = dataset.to_table(columns=[c for c in columns if c in schema_names], use_threads=False)
    del table, dataset
    return rows


def newest_event_time(out: str, facts: Iterable[TableFacts]) -> float | None:
    """The relay's time (``event_time``) of the newest row of any table, in seconds since the
    epoch; only each table's newest partition is read."""
    newest: datetime.datetime | None = None
    for fact in facts:
        if not fact.rows_by_day:
            continue
        rows = _read(out, fact.name, ["event_time"], max(fact.rows_by_day))
        if "event_time" not in rows.column_names or rows.num_rows == 0:
            continue
        value = pc.max(rows["event_time"]).as_py()
        if value is not None and (newest is None or value > newest):
            newest = value
    if newest is None:
        return None
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=datetime.UTC)
    return newest.timestamp()


def column_counts(out: str, fact: TableFacts, column: str) -> Counter[str]:
    """How many rows of the table hold each value of ``column`` (``true``, ``false``,
    ``null`` for a boolean), read a partition at a time; empty when it has no such column."""
    counts: Counter[str] = Counter()
    for day in fact.rows_by_day:
        rows = _read(out, fact.name, [column], day)
        if column not in rows.column_names:
            return counts
        for value, count in Counter(rows[column].to_pylist()).items():
            counts["null" if value is None else str(value).lower()] += count
    return counts
