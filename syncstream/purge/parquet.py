"""A purge in a plain-Parquet output (``--format parquet``): each file that holds involved rows
is rewritten without them under the purge's name (``part-...~{purge}.parquet``), then the old
file is removed: a rerun that finds both removes the old one, a rerun that finds only the new
one has nothing left to do there."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any

from syncstream.failpoints import failpoint
from syncstream.staging import Step

if TYPE_CHECKING:
    from syncstream.lake.storage import ParquetStorage

__all__ = ["authored_rows", "candidate_rows", "rewrite"]

_COLUMNS = ("operation", "uri", "record_json", "record_type", "follow_status")


def candidate_rows(
    storage: ParquetStorage, relative_path: str, author_column: str, dids: Collection[str]
) -> Iterator[tuple[Any, ...]]:
    """(operation, author, uri, record_json, record_type, follow_status) of the file's rows that
    are the accounts' or name one of them."""
    table = storage.read(relative_path)
    if "record_json" not in table.column_names or "uri" not in table.column_names:
        return  # rows of an account's own (events): found by their author alone
    authors = table.column(author_column).to_pylist()
    columns = {
        name: table.column(name).to_pylist() if name in table.column_names else [None] * len(authors)
        for name in _COLUMNS
    }
    for i, author in enumerate(authors):
        record_json = columns["record_json"][i]
        if author not in dids and (record_json is None or not any(did in record_json for did in dids)):
            continue  # neither theirs nor naming them
        yield (columns["operation"][i], author, columns["uri"][i], record_json,
               columns["record_type"][i], columns["follow_status"][i])  # fmt: skip


def rewrite(
    storage: ParquetStorage,
    relative_path: str,
    name: str,
    author_column: str,
    *,
    dids: Collection[str],
    involved: Collection[tuple[str, str, str]],
    purge_id: str,
) -> int:
    """Rewrite one file without the involved rows, under the purge's name, then remove it; the
    rows removed."""
    import pyarrow as pa  # noqa: PLC0415 (the purge of a cache alone needs none)

    directory, base = relative_path.rsplit("/", 1)
    stem = base.removesuffix(".parquet")
    if stem.endswith(f"~{purge_id}"):
        return 0  # written by this purge: nothing involved is left in it
    target = f"{directory}/{stem.split('~', 1)[0]}~{purge_id}.parquet"
    table = storage.read(relative_path)
    authors = table.column(author_column).to_pylist()
    uris = table.column("uri").to_pylist() if "uri" in table.column_names else [None] * len(authors)
    statuses = (
        table.column("follow_status").to_pylist()
        if "follow_status" in table.column_names
        else [None] * len(authors)
    )
    keep = [
        a not in dids and (name, u, s or "") not in involved
        for a, u, s in zip(authors, uris, statuses, strict=True)
    ]
    removed = keep.count(False)
    if removed == 0:
        return 0
    if not storage.exists(target):  # else written before a crash, whole: the old file goes
        kept = table.filter(pa.array(keep))
        if kept.num_rows:
            storage.write(target, kept)
        failpoint(Step.PURGE_PART_WRITTEN)
    storage.remove([relative_path])
    failpoint(Step.PURGE_PART_REPLACED)
    return removed


def authored_rows(
    storage: ParquetStorage, relative_path: str, author_column: str, dids: Collection[str]
) -> int:
    """How many of the file's rows belong to the accounts."""
    authors = storage.read(relative_path, columns=[author_column]).column(author_column).to_pylist()
    return sum(author in dids for author in authors)
