"""A purge in a Delta table: find the rows that involve the accounts, rewrite the files that
hold them without them in one commit, then vacuum the files that commit replaced
(``syncstream.lake.rewrite``), so that no file under the table holds a purged row, history
included. The log names files, never the accounts (see ``remove_rows``).

The vacuum is delta-rs' *lite* mode with no retention (the files the log marks removed), then
the files a killed compaction or purge left that no version of the log names
(``syncstream.lake.orphans``); it runs under the output's lock, so nothing is writing them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from deltalake import DeltaTable

from syncstream.errors import PurgeError, SyncstreamError
from syncstream.failpoints import failpoint
from syncstream.lake import rewrite
from syncstream.lake.delta import Location
from syncstream.lake.orphans import EXPORT_RECOVERY_HOURS, remove_orphans
from syncstream.lake.rewrite import MARK, rewrite_files
from syncstream.staging import Step

__all__ = ["PURGE_MARK", "author_column", "authored_rows", "candidate_rows", "remove_rows", "vacuum"]

PURGE_MARK = MARK  # a purge's commit says so in its commit info (what, never whom)
_COLUMNS = ("operation", "record_type", "uri", "record_json", "follow_status")


def author_column(where: Location) -> str | None:
    """The column of the account a row belongs to, in a table of any registry: ``author_did``,
    or ``did`` (account events); None when it has neither."""
    table = DeltaTable(where.uri, storage_options=where.storage_options)
    names = {field.name for field in table.schema().fields}
    del table
    return next((name for name in ("author_did", "did") if name in names), None)


def authored_rows(where: Location, author_column: str, dids: Collection[str]) -> int:
    """How many rows of the table's current version belong to the accounts."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    table = DeltaTable(where.uri, storage_options=where.storage_options)
    authors = table.to_pyarrow_dataset().to_table(columns=[author_column], use_threads=False)
    del table
    mask = pc.is_in(authors.column(author_column), value_set=pa.array(sorted(dids), pa.string()))
    return int(pc.sum(pc.fill_null(mask, False).cast(pa.int64())).as_py() or 0)


def candidate_rows(
    where: Location, author_column: str, dids: Collection[str], link_column: str | None = None
) -> Iterator[tuple[str | None, str, str | None, str | None, str | None, str | None, bool]]:
    """(operation, author, uri, record_json, record_type, follow_status, linked) of every row
    that is the accounts' or names one of them (its record's JSON holds the DID, or its
    ``link_column``, which outlives a delete's erasure, is one of them: ``linked``): the only
    rows that can involve them. Filtered by pyarrow.compute, so a large table costs one scan."""
    import pyarrow as pa  # noqa: PLC0415 (a purge of the cache alone needs none)
    import pyarrow.compute as pc  # noqa: PLC0415

    table = DeltaTable(where.uri, storage_options=where.storage_options)
    names = {field.name for field in table.schema().fields}
    link = link_column if link_column in names else None
    columns = [author_column, *(c for c in _COLUMNS if c in names), *([link] if link else [])]
    data = table.to_pyarrow_dataset().to_table(columns=columns, use_threads=False)
    del table
    wanted = pa.array(sorted(dids), pa.string())
    linked = pc.fill_null(pc.is_in(data.column(link), value_set=wanted), False) if link else None
    mask = pc.is_in(data.column(author_column), value_set=wanted)
    if linked is not None:
        mask = pc.or_kleene(mask, linked)
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
        [value in dids for value in found.column(link).to_pylist()] if link else [False] * found.num_rows,
        strict=True,
    )


def remove_rows(
    where: Location,
    author_column: str,
    dids: Collection[str],
    involved: Collection[tuple[str, str]],
    *,
    purge_id: str,
    on_committed: Callable[[], None],
) -> tuple[int, int]:
    """Rewrite each file of the table that holds involved rows (the accounts' own, and the
    (URI, follow status) involved) without them, and commit the old files' removal with the new
    files in one commit; (rows removed, files rewritten).

    Not ``DeltaTable.delete``: its commit records its predicate, which would name the accounts
    in the log for as long as the log keeps it. This commit's log entry names files only. A
    rerun after a crash writes the same names again (``part-{purge}-...``) until the commit is
    in; after it, no row is involved any more.

    The commit applies only to the version the purge read (no retry by delta-rs, which would
    not see that a concurrent commit removed the same files): if any other commit came first
    (a command that did not take the output's lock, or one whose lease ran out), the table is
    read and rewritten again (``rewrite_files``). Files of an attempt that lost go with the vacuum.
    """
    import pyarrow as pa  # noqa: PLC0415

    by_status: dict[str, set[str]] = {}
    for uri, status in involved:
        by_status.setdefault(status or "", set()).add(uri)

    def without_involved(fragment: Any) -> Any | None:
        names = fragment.physical_schema.names
        columns = [c for c in (author_column, "uri", "follow_status") if c in names]
        keys = fragment.to_table(columns=columns, use_threads=False)
        drop = _involved(keys, author_column, dids, by_status)
        if not any(drop):
            return None
        return fragment.to_table(use_threads=False).filter(pa.array([not d for d in drop]))

    try:
        before, after, files = rewrite_files(
            where,
            without_involved,
            tag=purge_id,
            mark="purge",
            before_commit=lambda: failpoint(Step.PURGE_TABLE_REWRITTEN),
        )
    except SyncstreamError as error:
        raise PurgeError(f"{error}: the table kept changing under the purge") from None
    on_committed()
    return before - after, files


def _involved(
    keys: Any, author_column: str, dids: Collection[str], by_status: Mapping[str, set[str]]
) -> list[bool]:
    authors = keys.column(author_column).to_pylist()
    count = len(authors)
    uris = keys.column("uri").to_pylist() if "uri" in keys.column_names else [None] * count
    statuses = (
        keys.column("follow_status").to_pylist() if "follow_status" in keys.column_names else [None] * count
    )
    return [
        author in dids or (uri is not None and uri in by_status.get(status or "", ()))
        for author, uri, status in zip(authors, uris, statuses, strict=True)
    ]


def vacuum(where: Location) -> list[str]:
    """Remove every file the log marks removed (a purge's, a compaction's), now, and every
    file a killed run left that no version of the log names (``lake.orphans``)."""
    return rewrite.vacuum(where) + remove_orphans(where, keep_hours=EXPORT_RECOVERY_HOURS)
