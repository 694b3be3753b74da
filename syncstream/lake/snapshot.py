"""``python -m syncstream.lake.snapshot``: a citable, plain Hive-Parquet copy of every dataset at one
consistent point, with ``DIR/manifest.json``.

The point is a time (each table at its latest version committed then) or a version number (each
table at that version). Without ``--as-of`` it is the moment the command starts, so exports
committing meanwhile are not in it. The manifest gives, per dataset, the table version, the row
count and each file's path, rows and SHA-256; the syncstream version; and the purges applied
(each table's delete commits up to that version: when, not whom).

The snapshot is recorded in the state store's catalog (``--state``): a purge rewrites it without
the account and issues its manifest again (new checksums, a ``purges`` entry saying when and how
many rows, never whom). An output that holds no table is refused: no empty manifest to cite.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from syncstream.cli import fail, run, setup_logging
from syncstream.config import parse_options
from syncstream.errors import ConfigError, SnapshotError
from syncstream.failpoints import failpoint, set_process
from syncstream.options import OUT, STATE, LogOptions, add_log_options, add_out_option
from syncstream.registry.datasets import Dataset
from syncstream.signals import Stops

if TYPE_CHECKING:
    from deltalake import DeltaTable

__all__ = ["SnapshotOptions", "main", "sha256_of", "snapshot", "write_manifest"]


class SnapshotOptions(LogOptions, frozen=True, kw_only=True):
    """Every option of the snapshot, with its default (``to`` has none)."""

    out: str = OUT
    state: str = STATE  # the store that made the tables: the snapshot is recorded in its catalog
    to: str  # where the copy and its manifest go
    as_of: str | None = None  # a table version or an ISO 8601 time; None: now


def _as_of(text: str | None) -> int | datetime.datetime:
    if text is None:
        return datetime.datetime.now(datetime.UTC)
    if text.isdigit():
        return int(text)
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _copy(table: DeltaTable, directory: str) -> None:
    """The table's loaded version as Hive-partitioned Parquet, a partition at a time, read on
    this thread (scan threads that outlive the interpreter abort it at exit)."""
    import pyarrow.dataset as pads  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    from syncstream.lake.delta import PARTITION  # noqa: PLC0415

    shutil.rmtree(directory, ignore_errors=True)
    data = table.to_pyarrow_dataset()
    for date in sorted(p[PARTITION] for p in table.partitions()):
        rows = data.to_table(
            filter=pads.field(PARTITION) == pads.scalar(datetime.date.fromisoformat(date)), use_threads=False
        )
        part = os.path.join(directory, f"{PARTITION}={date}")
        os.makedirs(part, exist_ok=True)
        pq.write_table(
            rows.drop_columns([PARTITION]), os.path.join(part, "part-0.parquet"), compression="zstd"
        )
        del rows
    del data


def snapshot(
    out: str, target: str, datasets: Iterable[Dataset], as_of: int | datetime.datetime
) -> dict[str, Any]:
    """Copy each dataset's table at ``as_of`` to ``target``; the manifest (also written there).
    ``ConfigError`` when ``out`` holds no table, or none at ``as_of``: nothing to cite."""
    import pyarrow.parquet as pq  # noqa: PLC0415
    from deltalake import DeltaTable  # noqa: PLC0415

    from syncstream import __version__  # noqa: PLC0415
    from syncstream.lake.delta import is_table, location  # noqa: PLC0415

    manifest: dict[str, Any] = {
        "syncstream_version": __version__,
        "as_of": as_of if isinstance(as_of, int) else as_of.isoformat(),
        "datasets": {},
        "purges": [],
    }
    tables = [d for d in sorted(datasets, key=lambda d: d.name) if is_table(location(out, d.name))]
    if not tables:
        raise ConfigError(f"{out} holds no Delta table to snapshot; check --out")
    os.makedirs(target, exist_ok=True)
    for dataset in tables:
        where = location(out, dataset.name)
        table = DeltaTable(where.uri, storage_options=where.storage_options)
        try:
            table.load_as_version(as_of)
        except Exception:  # the table began after that point
            del table
            continue
        version = table.version()
        directory = os.path.join(target, dataset.name)
        try:
            _copy(table, directory)
        except OSError as error:
            raise SnapshotError(
                f"{dataset.name} at version {version}: a file of that version is gone ({error}); a purge "
                "vacuums what it replaced, so time travel to before a purge is gone by design, and "
                "compaction vacuums files older than its retention"
            ) from None
        files = []
        for root, _, names in sorted(os.walk(directory)):
            for name in sorted(names):
                path = os.path.join(root, name)
                rows = pq.ParquetFile(path).metadata.num_rows
                files.append({"path": os.path.relpath(path, target), "rows": rows, "sha256": sha256_of(path)})
        manifest["datasets"][dataset.name] = {
            "table_version": version,
            "rows": sum(f["rows"] for f in files),
            "files": files,
        }
        failpoint("snapshot.dataset_copied")
        for commit in table.history():
            purge = commit.get("syncstream") == "purge" or commit.get("operation") == "DELETE"
            if purge and int(commit.get("version", -1)) <= version:
                when = datetime.datetime.fromtimestamp(commit["timestamp"] / 1000, datetime.UTC)
                manifest["purges"].append(
                    {"dataset": dataset.name, "table_version": commit["version"], "time": when.isoformat()}
                )
        del table
    if not manifest["datasets"]:
        raise ConfigError(f"no table of {out} existed at {manifest['as_of']}; nothing to snapshot")
    manifest["purges"].sort(key=lambda p: (p["time"], p.get("dataset", "")))
    write_manifest(target, manifest)
    return manifest


def write_manifest(target: str, manifest: Mapping[str, Any]) -> str:
    """Write ``target/manifest.json`` whole (a temporary, synced, renamed); its SHA-256."""
    path = os.path.join(target, "manifest.json")
    temporary = os.path.join(target, ".manifest.json.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return sha256_of(path)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncstream snapshot",
        description=(
            "Write a plain Hive-Parquet copy of every dataset at one consistent point, and "
            "DIR/manifest.json (per dataset: table version, rows, each file's path, rows and SHA-256; "
            "the syncstream version; the purges applied): a version to cite."
        ),
        epilog="Exit status: 0 when written; 1 when it could not be; 2 for bad options, a state "
        "store that is not there, or an output that holds no table.",
    )
    add_out_option(parser, what="the export's output")
    parser.add_argument(
        "--state",
        default=STATE,
        help="the state store of the export that made the tables: the snapshot is recorded in its "
        "catalog, so that a purge rewrites it (default: %(default)s)",
    )
    parser.add_argument("--to", required=True, metavar="DIR", help="where the copy and its manifest go")
    parser.add_argument(
        "--as-of",
        metavar="VERSION_OR_TIME",
        help="a table version (each table at it) or an ISO 8601 time (each table as it was then); "
        "default: now",
    )
    add_log_options(parser)
    return parser


def main(argv: Sequence[str] | None = None, *, datasets: Mapping[str, Dataset] | None = None) -> int:
    parser = _parser()
    args = parse_options(SnapshotOptions, parser, argv)
    setup_logging(args.quiet, args.log_format)
    set_process("snapshot")
    # A copy without its manifest is no snapshot: a stop lets the copy finish.
    with Stops("finishing the snapshot, then exiting"):
        return _main(parser, args, datasets)


def _main(
    parser: argparse.ArgumentParser, args: SnapshotOptions, datasets: Mapping[str, Dataset] | None
) -> int:
    try:
        as_of = _as_of(args.as_of)
    except ValueError:
        parser.error(f"--as-of: {args.as_of!r} is neither a version nor an ISO 8601 time")
    if datasets is None:
        from syncstream.registry.builtin import HANDLERS  # noqa: PLC0415
        from syncstream.registry.handlers import datasets_of  # noqa: PLC0415

        datasets = datasets_of(HANDLERS)
    from syncstream.store import StateStore  # noqa: PLC0415

    try:
        state = StateStore(args.state, create=False)
    except ConfigError as error:
        fail(str(error), event="snapshot_refused")
        return 2
    with state:
        point = args.as_of or (as_of.isoformat() if isinstance(as_of, datetime.datetime) else str(as_of))
        # known before its first file is written: a snapshot cut short is a copy too
        state.catalog.record_snapshot(args.to, args.out, point, "", time.time())
        try:
            manifest = snapshot(args.out, args.to, datasets.values(), as_of)
        except ConfigError as error:  # refused before anything was written
            state.catalog.forget_snapshot(args.to)
            fail(str(error), event="snapshot_refused")
            return 2
        except Exception as error:
            fail(f"snapshot failed: {error}", event="snapshot_failed")
            return 1
        digest = sha256_of(os.path.join(args.to, "manifest.json"))
        state.catalog.record_snapshot(args.to, args.out, point, digest, time.time())
    for name, entry in sorted(manifest["datasets"].items()):
        print(
            f"  {name}: version {entry['table_version']}, {entry['rows']} rows, {len(entry['files'])} files"
        )
    print(f"snapshot of {len(manifest['datasets'])} datasets in {os.path.abspath(args.to)} (manifest.json)")
    print(f"manifest sha256: {digest}")
    return 0


if __name__ == "__main__":
    run(main)
