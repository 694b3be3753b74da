"""A purge in a Delta table: find the rows that involve the accounts, delete them in one
commit, then vacuum the files that commit replaced, so that no file under the table holds a
purged row, history included: time travel to a version before the purge is gone, by design.

The vacuum is delta-rs' *lite* mode with no retention: it removes only the files the log marks
removed, never a file another store is writing and has not committed yet.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import Any

from deltalake import DeltaTable

from syncstream.lake import Location

__all__ = ["candidate_rows", "delete_rows", "predicate", "vacuum"]

_COLUMNS = ("operation", "record_type", "uri", "record_json", "follow_status")


def candidate_rows(
    where: Location, author_column: str, dids: Collection[str]
) -> Iterator[tuple[str | None, str, str | None, str | None, str | None, str | None]]:
    """(operation, author, uri, record_json, record_type, follow_status) of every row that is
    the accounts' or names one of them (its record's JSON holds the DID): the only rows that
    can involve them. Filtered by pyarrow.compute, so a large table costs one scan."""
    import pyarrow as pa  # noqa: PLC0415 (a purge of the cache alone needs none)
    import pyarrow.compute as pc  # noqa: PLC0415

    table = DeltaTable(where.uri, storage_options=where.storage_options)
    names = {field.name for field in table.schema().fields}
    columns = [author_column, *(c for c in _COLUMNS if c in names)]
    data = table.to_pyarrow_dataset().to_table(columns=columns, use_threads=False)
    del table
    mask = pc.is_in(data.column(author_column), value_set=pa.array(sorted(dids), pa.string()))
    if "record_json" in names:
        for did in dids:
            mask = pc.or_kleene(mask, pc.match_substring(data.column("record_json"), did))
    found = data.filter(pc.fill_null(mask, False))

    def column(name: str) -> list[Any]:
        return found.column(name).to_pylist() if name in found.column_names else [None] * found.num_rows

    yield from zip(
        column("operation"),
        column(author_column),
        column("uri"),
        column("record_json"),
        column("record_type"),
        column("follow_status"),
        strict=True,
    )


def _quoted(values: Collection[str]) -> str:
    return ", ".join("'" + value.replace("'", "''") + "'" for value in sorted(values))


def predicate(
    author_column: str, dids: Collection[str], involved: Collection[tuple[str, str]], has_status: bool
) -> str:
    """SQL for the rows to delete: the accounts' own, and the (URI, follow status) involved."""
    clauses = [f"{author_column} IN ({_quoted(dids)})"]
    by_status: dict[str, set[str]] = {}
    for uri, status in involved:
        by_status.setdefault(status, set()).add(uri)
    for status, uris in sorted(by_status.items()):
        if has_status and status:
            clauses.append(f"(uri IN ({_quoted(uris)}) AND follow_status = {_quoted([status])})")
        else:
            clauses.append(f"uri IN ({_quoted(uris)})")
    return " OR ".join(clauses)


def delete_rows(where: Location, condition: str, on_deleted: Callable[[], None]) -> int:
    """Delete the rows matching ``condition`` in one commit (none when no row matches); how
    many were deleted."""
    table = DeltaTable(where.uri, storage_options=where.storage_options)
    metrics = table.delete(condition)
    del table
    on_deleted()
    deleted: int = metrics.get("num_deleted_rows", 0) or 0
    return deleted


def vacuum(where: Location) -> list[str]:
    """Remove every file the log marks removed (a purge's, a compaction's), now."""
    table = DeltaTable(where.uri, storage_options=where.storage_options)
    removed: list[str] = table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    del table
    return removed
