"""``python -m benchmarks.tables``: what the Delta tables cost and save.

1. **Compaction.** A cache built from the real corpus is split into ``--exports`` parts, each
   exported by ``python -m syncstream.export`` into one lake (one commit per table per export,
   one file per partition each); then a DuckDB query (posts per author per day, through
   ``delta_scan``) is timed before and after ``compact_tables`` (the partition counted as
   closed), with the files per partition.
2. **Purge.** A posts table of ``--rows`` rows by 1,000 authors in 10 daily partitions, written
   as 100 appends (as 100 exports would), has one author's rows deleted and vacuumed as
   ``python -m syncstream.purge`` does (``syncstream.purge.tables``): time and bytes rewritten,
   plain and after a z-order by author (``--target-mib`` files).

The figures are printed and saved under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from benchmarks.inputs import build_cache, corpus_dids
from syncstream.lake.compact import CompactOptions, compact_tables
from syncstream.lake.delta import Location, delta_schema
from syncstream.purge.tables import candidate_rows, remove_rows, vacuum
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.handlers import datasets_of

HERE = Path(__file__).resolve().parent
POSTS = "study_user_activity/post"


def _duckdb() -> Any:

    extensions = os.path.join(sysconfig.get_paths()["purelib"], "duckdb_ext", "extensions")
    db = duckdb.connect(config={"extension_directory": extensions, "autoinstall_known_extensions": False})
    db.execute("LOAD delta")
    return db


def _files_per_partition(table_dir: Path) -> float:

    table = DeltaTable(str(table_dir))
    counts: dict[str, int] = {}
    for uri in table.file_uris():
        partition = Path(uri).parent.name
        counts[partition] = counts.get(partition, 0) + 1
    del table
    return statistics.mean(counts.values())


def _query_seconds(table_dir: Path, rounds: int) -> float:
    query = (
        f"SELECT author_did, partition_date, count(*) FROM delta_scan('{table_dir}') "
        "WHERE operation = 'create' GROUP BY ALL"
    )
    times = []
    for _ in range(rounds):
        db = _duckdb()
        started = time.perf_counter()
        db.execute(query).fetchall()
        times.append(time.perf_counter() - started)
        db.close()
    return statistics.median(times)


def bench_compaction(work: Path, exports: int, records: int, rounds: int) -> dict[str, Any]:

    template = work / "template"
    build_cache(template, records, corpus_dids())
    files = sorted(
        os.path.relpath(os.path.join(root, name), template)
        for root, _, names in os.walk(template)
        for name in names
        if not name.startswith(".")
    )
    out = work / "lake"
    for i in range(exports):
        cache = work / f"cache{i}"
        for relpath in files[i::exports]:
            target = cache / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(template / relpath, target)
        command = [sys.executable, "-m", "syncstream.export", "-q", "--cache-dir", str(cache),
                   "--state", str(work / "state.sqlite"), "--out", str(out)]  # fmt: skip
        subprocess.run(command, check=True)
        shutil.rmtree(cache)
    table_dir = out / POSTS
    before = {
        "files_per_partition": _files_per_partition(table_dir),
        "query_s": _query_seconds(table_dir, rounds),
    }
    started = time.perf_counter()
    summary = compact_tables(
        CompactOptions(out=str(out), retention_hours=0),
        datasets_of(HANDLERS).values(),
        now=time.time() + 3 * 86400,
    )
    compaction_s = time.perf_counter() - started
    after = {
        "files_per_partition": _files_per_partition(table_dir),
        "query_s": _query_seconds(table_dir, rounds),
    }
    return {
        "exports": exports,
        "cache_files": len(files),
        "before": before,
        "after": after,
        "query_speedup": before["query_s"] / after["query_s"],
        "compaction_s": compaction_s,
        "files_removed": summary.files_removed,
        "files_added": summary.files_added,
    }


def _posts_table(path: Path, rows: int) -> None:
    """``rows`` posts by 1,000 authors in 10 partitions, written as 100 appends."""

    schema = pa.schema(delta_schema(datasets_of(HANDLERS)[POSTS]).to_arrow())
    DeltaTable.create(str(path), schema, partition_by=["partition_date"])
    per_append = rows // 100
    for n in range(100):
        start = n * per_append
        ids = range(start, start + per_append)
        data: dict[str, Any] = {field.name: pa.nulls(per_append, field.type) for field in schema}
        authors = [f"did:plc:author{i % 1000:04d}aaaaaaaaaaaaaaa" for i in ids]
        data["author_did"] = pa.array(authors)
        data["uri"] = pa.array(
            [f"at://{a}/app.bsky.feed.post/3p{i:x}" for a, i in zip(authors, ids, strict=True)]
        )
        data["rkey"] = pa.array([f"3p{i:x}" for i in ids])
        data["collection"] = pa.array(["app.bsky.feed.post"] * per_append)
        data["source"] = pa.array(["firehose"] * per_append)
        data["synctimestamp"] = pa.array(
            [1_783_000_000_000_000 + i for i in ids], pa.timestamp("us", tz="UTC")
        )
        data["operation"] = pa.array(["create"] * per_append)
        data["record_type"] = pa.array(["post"] * per_append)
        data["text"] = pa.array([f"post number {i} with some words in it" for i in ids])
        data["record_json"] = pa.array([f'{{"text": "post number {i} with some words in it"}}' for i in ids])
        days = [f"2026-07-{1 + i % 10:02d}" for i in ids]
        data["partition_date"] = pa.array(days).cast(pa.date32())
        table = pa.table([data[f.name].cast(f.type) for f in schema], schema=schema)
        write_deltalake(str(path), table, mode="append")


def _bytes(table_dir: Path) -> dict[str, int]:

    table = DeltaTable(str(table_dir))

    actions = pa.table(table.get_add_actions(flatten=True))
    del table
    return dict(
        zip(actions.column("path").to_pylist(), actions.column("size_bytes").to_pylist(), strict=True)
    )


def _purge_one(table_dir: Path, did: str) -> dict[str, Any]:

    where = Location(str(table_dir), {})
    before = _bytes(table_dir)
    started = time.perf_counter()
    found = sum(1 for _ in candidate_rows(where, "author_did", {did}))
    deleted, _ = remove_rows(where, "author_did", {did}, [], purge_id="bench", on_committed=lambda: None)
    vacuumed = vacuum(where)
    seconds = time.perf_counter() - started
    after = _bytes(table_dir)
    return {
        "seconds": seconds,
        "rows_found": found,
        "rows_deleted": deleted,
        "files_rewritten": len(set(before) - set(after)),
        "bytes_rewritten": sum(size for path, size in after.items() if path not in before),
        "table_bytes": sum(before.values()),
        "files_vacuumed": len(vacuumed),
    }


def bench_purge(work: Path, rows: int, target_mib: float) -> dict[str, Any]:

    plain = work / "purge-plain"
    _posts_table(plain, rows)
    ordered = work / "purge-zorder"
    shutil.copytree(plain, ordered)
    table = DeltaTable(str(ordered))
    started = time.perf_counter()
    table.optimize.z_order(["author_did"], target_size=int(target_mib * (1 << 20)))
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    z_order_s = time.perf_counter() - started
    del table
    did = "did:plc:author0042aaaaaaaaaaaaaaa"
    return {
        "rows": rows,
        "plain": _purge_one(plain, did),
        "z_ordered": _purge_one(ordered, did) | {"z_order_s": z_order_s, "target_mib": target_mib},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tables", description=__doc__)
    parser.add_argument("--exports", type=int, default=40)
    parser.add_argument("--records", type=int, default=30_000, help="corpus records over all exports")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--target-mib", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parser.add_argument("--only", choices=["compaction", "purge"], action="append")
    args = parser.parse_args(argv)
    only = set(args.only or ["compaction", "purge"])
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        if "compaction" in only:
            results["compaction"] = bench_compaction(work, args.exports, args.records, args.rounds)
            print(json.dumps(results["compaction"], indent=2))
        if "purge" in only:
            results["purge"] = bench_purge(work, args.rows, args.target_mib)
            print(json.dumps(results["purge"], indent=2))
    target = HERE / "results" / f"tables-{time.strftime('%Y%m%dT%H%M%S')}.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
