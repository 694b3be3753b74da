"""Rewriting a Delta table's data files in place, then vacuuming what they replaced: the one way
the package changes rows a table already holds (a purge removes an account's rows, an erase
nulls a deleted record's content).

Each file that holds a row to change is written again, changed, beside it; the old files'
removal and the new files go into one commit, whose log entry names files only (never a DID,
a URI or a predicate that would outlive the change in the log). ``vacuum`` then removes the
files the log marks removed, so that no file under the table holds what was changed, history
included: time travel to a version before the change is gone, by design.

The vacuum is delta-rs' *lite* mode with no retention: it removes only the files the log marks
removed, never a file another store is writing and has not committed yet.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction

from syncstream.errors import SyncstreamError
from syncstream.lake.delta import COMMIT_ATTEMPTS, PARTITION, Location

__all__ = ["MARK", "Rewrite", "rewrite_files", "vacuum"]

MARK = "syncstream"  # a rewrite's commit says so in its commit info (what, never whom)

# The tags earlier rewrites put before a file's own name: dropped, so that a file rewritten
# again and again keeps a name of one tag (a file name has 255 bytes at most).
_TAGS = re.compile(r"^(?:[a-z]*[0-9]{20}-)+")

Rewrite = Callable[[Any], Any | None]
"""Given a data file (a ``pyarrow.dataset`` fragment), the Table it becomes, or None to leave
it as it is. A Table of no rows removes the file."""


def rewrite_files(
    where: Location,
    rewrite: Rewrite,
    *,
    tag: str,
    mark: str,
    before_commit: Callable[[], None] | None = None,
) -> tuple[int, int, int]:
    """Rewrite each data file of the table that ``rewrite`` changes, as
    ``part-{tag}-{name}`` beside it, and commit the old files' removal with the new files in
    one commit marked ``{MARK: mark}``; (rows before, rows after, files rewritten) of the
    files it changed. A rerun after a crash before the commit writes the same names again;
    a commit that another store's beat is done again from the table as it is then."""
    for _ in range(COMMIT_ATTEMPTS):
        try:
            return _rewrite_once(where, rewrite, tag=tag, mark=mark, before_commit=before_commit)
        except CommitFailedError:
            continue
    raise SyncstreamError(f"{where.uri}: the rewrite kept conflicting ({COMMIT_ATTEMPTS} attempts)")


def _rewrite_once(
    where: Location, rewrite: Rewrite, *, tag: str, mark: str, before_commit: Callable[[], None] | None
) -> tuple[int, int, int]:
    import pyarrow as pa  # noqa: PLC0415 (only a command that changes rows needs it)
    import pyarrow.parquet as pq  # noqa: PLC0415

    table = DeltaTable(where.uri, storage_options=where.storage_options)
    dataset = table.to_pyarrow_dataset()
    actions = pa.table(table.get_add_actions(flatten=True))
    sizes = dict(
        zip(actions.column("path").to_pylist(), actions.column("size_bytes").to_pylist(), strict=True)
    )
    now = int(time.time() * 1000)
    changes: list[AddAction | RemoveAction] = []
    before = after = 0
    for fragment in dataset.get_fragments():
        changed = rewrite(fragment)
        if changed is None:
            continue
        path: str = fragment.path
        date = path.split("/", 1)[0].removeprefix(f"{PARTITION}=")
        values: dict[str, str | None] = {PARTITION: date}
        changes.append(RemoveAction(path, True, now, sizes.get(path), values))
        before += fragment.count_rows()
        after += changed.num_rows
        if changed.num_rows:
            directory, name = path.rsplit("/", 1)
            target = f"{directory}/part-{tag}-{_TAGS.sub('', name.removeprefix('part-'))}"
            with fragment.filesystem.open_output_stream(target) as sink:
                pq.write_table(changed, sink, compression="zstd")
            size = fragment.filesystem.get_file_info(target).size
            stats = json.dumps({"numRecords": changed.num_rows})
            changes.append(AddAction(target, size, values, now, True, stats))
    if before_commit is not None:
        before_commit()  # every new file written, none committed
    if changes:
        table.create_write_transaction(
            changes,
            "append",
            table.schema(),
            partition_by=[PARTITION],
            # no retry by delta-rs, which would not see that a concurrent commit removed the
            # same files: a lost commit is done again from the table as it is then
            commit_properties=CommitProperties(custom_metadata={MARK: mark}, max_commit_retries=0),
        )
    del dataset, table
    return before, after, sum(isinstance(c, RemoveAction) for c in changes)


def vacuum(where: Location) -> list[str]:
    """Remove every file the log marks removed (a purge's, an erase's, a compaction's), now."""
    table = DeltaTable(where.uri, storage_options=where.storage_options)
    removed: list[str] = table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    del table
    return removed
