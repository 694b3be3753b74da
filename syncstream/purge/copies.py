"""The copies a purge reaches besides the outputs, each as the catalog records it:

- **snapshots**: each Parquet file is rewritten without the involved rows (a temporary, synced,
  renamed over it) and the manifest issued again: new row counts and SHA-256s, and a ``purges``
  entry that says a purge was applied, when and how many rows it removed, never whom. A citable
  snapshot changes when a participant withdraws: cite the manifest's SHA-256 as re-issued.
- **record files** (``--record``): every frame that names the accounts (theirs, and others'
  that point at them) is dropped, the file rewritten whole and renamed over the old one.
- **backfill scratch**: the directories the catalog lists are removed (only the accounts' own
  while a writer runs: it may be using the others).

Each step is idempotent: a purge killed half-way does it again, and finds nothing left to remove
where it had already been.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Collection, Iterator, Mapping
from typing import Any, NamedTuple

import zstandard

from syncstream.firehose.replay import ZSTD_MAGIC, iter_replay, write_frame
from syncstream.purge.bookkeeping import scrub_bookkeeping
from syncstream.purge.summary import writer_running
from syncstream.scratch import remove_scratch
from syncstream.store import StateStore

__all__ = ["Copies", "purge_copies"]

log = logging.getLogger("syncstream.purge")


class Copies(NamedTuple):
    snapshots: int  # snapshots rewritten
    snapshot_rows: int
    record_files: int  # record files rewritten
    frames: int  # frames dropped from them
    scratch: int  # scratch directories removed
    bookkeeping: int  # bookkeeping files changed and directories removed (``purge.bookkeeping``)


def purge_copies(
    state: StateStore,
    root: str,
    *,
    dids: Collection[str],
    involved: Collection[tuple[str, str, str]],
    authors: Mapping[str, str],
    purge_id: str,
    reason: str,
) -> Copies:
    """Remove the accounts from every snapshot, record file and scratch directory recorded, and
    from the bookkeeping and directory names of the cache at ``root``."""
    now = datetime.datetime.now(datetime.UTC)
    snapshots = rows = 0
    for entry in state.catalog.snapshots():
        if not os.path.isfile(os.path.join(entry.location, "manifest.json")):
            log.warning("the snapshot %s is gone: forgotten", entry.location)
            state.catalog.forget_snapshot(entry.location)
            continue
        removed, digest = _reissue(entry.location, dids, involved, authors, purge_id, reason, now)
        if digest != entry.manifest_sha256:
            state.catalog.reissue_snapshot(entry.location, digest, now.timestamp())
            snapshots += 1
            rows += removed
    record_files = frames = 0
    for record in state.catalog.records():
        dropped = _filter_record(record.location, dids)
        if dropped:
            record_files += 1
            frames += dropped
    scratch = remove_scratch(state.catalog, dids if writer_running(root) else None)
    bookkeeping = scrub_bookkeeping(root, dids, {uri for _, uri, _ in involved})
    return Copies(snapshots, rows, record_files, frames, scratch, bookkeeping)


# snapshots -----------------------------------------------------------------------------------


def _reissue(  # noqa: PLR0917 (private, one call site)
    target: str,
    dids: Collection[str],
    involved: Collection[tuple[str, str, str]],
    authors: Mapping[str, str],
    purge_id: str,
    reason: str,
    now: datetime.datetime,
) -> tuple[int, str]:
    """Rewrite the snapshot at ``target`` without the rows and issue its manifest again if
    anything changed (this pass, or a pass cut short before its manifest); (rows removed, the
    manifest's SHA-256)."""
    from syncstream.lake.snapshot import sha256_of, write_manifest  # noqa: PLC0415 (pyarrow)

    path = os.path.join(target, "manifest.json")
    with open(path, encoding="utf-8") as handle:
        manifest: dict[str, Any] = json.load(handle)
    removed = 0
    changed = False
    for name, dataset in manifest.get("datasets", {}).items():
        for file in dataset["files"]:
            where = os.path.join(target, file["path"])
            if not os.path.isfile(where):
                continue
            removed += _rewrite_part(where, name, authors.get(name), dids, involved)
            rows, digest = _rows(where), sha256_of(where)
            changed |= (rows, digest) != (file["rows"], file["sha256"])
            file["rows"], file["sha256"] = rows, digest
        dataset["rows"] = sum(f["rows"] for f in dataset["files"])
    if not changed:
        return 0, sha256_of(path)
    purges: list[dict[str, Any]] = manifest.setdefault("purges", [])
    entry = next((p for p in purges if p.get("purge_id") == purge_id), None)
    if entry is None:
        purges.append({"purge_id": purge_id, "applied": reason, "time": now.isoformat(), "rows": removed})
    else:  # a pass cut short before its manifest: the rows it removed then are not counted
        entry["rows"] += removed
    purges.sort(key=lambda p: (p["time"], p.get("dataset", "")))
    return removed, write_manifest(target, manifest)


def _rows(path: str) -> int:
    import pyarrow.parquet as pq  # noqa: PLC0415

    rows: int = pq.ParquetFile(path).metadata.num_rows
    return rows


def _rewrite_part(
    path: str,
    name: str,
    author: str | None,
    dids: Collection[str],
    involved: Collection[tuple[str, str, str]],
) -> int:
    """Rewrite one file without the rows (a temporary beside it, synced, renamed over it); the
    rows removed."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    table = pq.read_table(path)
    columns = table.column_names
    author = author if author in columns else next((c for c in ("author_did", "did") if c in columns), None)
    if author is None:
        return 0
    authors = table.column(author).to_pylist()
    uris = table.column("uri").to_pylist() if "uri" in columns else [None] * len(authors)
    statuses = (
        table.column("follow_status").to_pylist() if "follow_status" in columns else [None] * len(authors)
    )
    keep = [
        a not in dids and (name, u, s or "") not in involved
        for a, u, s in zip(authors, uris, statuses, strict=True)
    ]
    removed = keep.count(False)
    if removed:
        temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.purge-tmp")
        pq.write_table(table.filter(pa.array(keep)), temporary, compression="zstd")
        _sync(temporary)
        os.replace(temporary, path)
    return removed


# record files --------------------------------------------------------------------------------


def _filter_record(path: str, dids: Collection[str]) -> int:
    """Drop the frames that name the accounts from the record file at ``path``, rewritten whole
    in its own format (raw, or zstd); the frames dropped (0: left as it was)."""
    if not os.path.isfile(path):
        return 0
    names = [did.encode() for did in dids]
    with open(path, "rb") as handle:
        compressed = handle.read(4) == ZSTD_MAGIC
    if not any(_names_any(path, names)):
        return 0
    temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.purge-tmp")
    dropped = 0
    with open(temporary, "wb") as raw:
        sink: Any = zstandard.ZstdCompressor().stream_writer(raw, closefd=False) if compressed else raw
        for frame in iter_replay(path):
            if any(name in frame for name in names):
                dropped += 1
            else:
                write_frame(sink, frame)
        if compressed:
            sink.close()
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(temporary, path)
    return dropped


def _names_any(path: str, names: list[bytes]) -> Iterator[bool]:
    for frame in iter_replay(path):
        yield any(name in frame for name in names)


def _sync(path: str) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
