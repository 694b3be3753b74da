"""The datasets as Delta tables: read by deltalake, DuckDB (delta_scan, offline) and polars; one
commit per table per export run under the store's application transaction; compaction,
snapshots, schema evolution and the take-over of a plain-Parquet output."""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, Field, Schema
from deltalake.schema import PrimitiveType

from syncstream.export.__main__ import main as export_main
from syncstream.firehose.encode import OpSpec
from syncstream.lake.compact import CompactOptions, compact_tables
from syncstream.lake.compact import main as compact_main
from syncstream.lake.delta import delta_schema
from syncstream.lake.snapshot import main as snapshot_main
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.handlers import datasets_of
from syncstream.store import StateStore
from tests.helpers import commit, post
from tests.scenario import EXPECTED, FRIEND, STUDY, export_args, keys, write_cache
from tests.tables import all_rows, connect, stray_files, table_rows

POSTS = "study_user_activity/post"


def more_posts(first: int, count: int) -> list[bytes]:
    return [
        commit(first + i, STUDY, OpSpec("create", f"app.bsky.feed.post/3m{first + i}", post(f"n{i}")))
        for i in range(count)
    ]


def test_every_reader_sees_every_row_and_a_typed_partition(tmp_path: Path) -> None:
    """deltalake, DuckDB's delta_scan and polars' scan_delta read the same rows of each table,
    partition_date a date."""
    write_cache(tmp_path)
    assert export_main(export_args(tmp_path)) == 0
    out = tmp_path / "out"
    with connect() as db:
        for name, expected in EXPECTED.items():
            rows = table_rows(out, name)
            assert keys(rows) == expected, name
            assert all(isinstance(r["partition_date"], datetime.date) for r in rows)
            (count, date_type) = db.execute(
                f"SELECT count(*), any_value(typeof(partition_date)) FROM delta_scan('{out / name}')"
            ).fetchone()  # type: ignore[misc]
            assert (count, date_type) == (len(expected), "DATE")
            frame = pl.scan_delta(str(out / name)).collect()
            assert frame.height == len(expected) and frame.schema["partition_date"] == pl.Date
    assert stray_files(out) == []


def test_one_commit_per_table_per_run_with_the_stores_transaction(tmp_path: Path) -> None:
    """A run of many chunks is one commit per table, carrying (store id, run version); the next
    run's version is higher."""
    write_cache(tmp_path, more_posts(100, 30))
    assert export_main(export_args(tmp_path, "--batch-files", "7")) == 0
    write_cache(tmp_path, more_posts(200, 5))
    assert export_main(export_args(tmp_path, "--batch-files", "2")) == 0
    with StateStore(tmp_path / "state.sqlite") as state:
        app_id = state.exports.store_id()
    table = DeltaTable(str(tmp_path / "out" / POSTS))
    writes = [c for c in table.history() if c["operation"] == "WRITE"]
    assert len(writes) == 2  # 35 files in 6 + 3 chunks: one commit of rows per run
    assert table.transaction_version(app_id) == 2
    assert len(table_rows(tmp_path / "out", POSTS)) == 35


def test_compaction_leaves_one_file_per_closed_partition(tmp_path: Path) -> None:
    """Five exports leave five files in a partition; once it is closed, compaction makes it one,
    with the same rows, a checkpoint, and nothing else left on disk (retention 0)."""
    for i in range(5):
        write_cache(tmp_path, more_posts(100 + 10 * i, 4))
        assert export_main(export_args(tmp_path)) == 0
    out = tmp_path / "out"
    before = sorted(r["uri"] for r in table_rows(out, POSTS))
    assert len(DeltaTable(str(out / POSTS)).file_uris()) == 5
    summary = compact_tables(
        CompactOptions(out=str(out), retention_hours=0),
        datasets_of(HANDLERS).values(),
        now=time.time() + 3 * 86400,
    )
    assert summary.partitions >= 1 and summary.files_removed >= 5
    assert len(DeltaTable(str(out / POSTS)).file_uris()) == 1
    assert sorted(r["uri"] for r in table_rows(out, POSTS)) == before
    assert list((out / POSTS / "_delta_log").glob("*.checkpoint.parquet"))
    assert stray_files(out) == []
    assert compact_main(["--out", str(out), "-q"]) == 0  # today's partitions are open: nothing to do


def test_a_snapshot_is_a_plain_copy_with_a_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every table at one point, as Hive Parquet, with versions, counts and checksums; a purge
    before it is listed, without naming the account. (The scenario deletes what it creates:
    its content is kept, so that version 1 stays readable until the purge.)"""
    write_cache(tmp_path)
    assert export_main(export_args(tmp_path, "--keep-deleted-content")) == 0
    first = tmp_path / "first"
    assert (
        snapshot_main(
            [
                "--out",
                str(tmp_path / "out"),
                "--state",
                str(tmp_path / "state.sqlite"),
                "--to",
                str(first),
                "--as-of",
                "1",
                "-q",
            ]
        )
        == 0
    )
    assert json.loads((first / "manifest.json").read_text())["datasets"][POSTS]["table_version"] == 1
    store = ["--cache-dir", str(tmp_path / "cache"), "--state", str(tmp_path / "state.sqlite")]
    from syncstream.purge.__main__ import main as purge_main

    assert purge_main([*store, "--out", str(tmp_path / "out"), "--did", FRIEND, "-q"]) == 0
    target = tmp_path / "snapshot"
    assert (
        snapshot_main(
            [
                "--out",
                str(tmp_path / "out"),
                "--state",
                str(tmp_path / "state.sqlite"),
                "--to",
                str(target),
                "-q",
            ]
        )
        == 0
    )
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["syncstream_version"]
    for name, entry in manifest["datasets"].items():
        table = DeltaTable(str(tmp_path / "out" / name))
        assert entry["table_version"] == table.version()
        assert entry["rows"] == len(table_rows(tmp_path / "out", name))
        for file in entry["files"]:
            data = (target / file["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == file["sha256"]
            assert pq.ParquetFile(target / file["path"]).metadata.num_rows == file["rows"]
    assert {p["dataset"] for p in manifest["purges"]} >= {"in_network_user_activity/post"}
    assert FRIEND not in (target / "manifest.json").read_text()
    capsys.readouterr()
    before = ["--out", str(tmp_path / "out"), "--state", str(tmp_path / "state.sqlite")]
    before += ["--to", str(tmp_path / "before"), "--as-of", "1", "-q"]
    assert snapshot_main(before) == 1  # the purge vacuumed what version 1 of its tables read
    assert "time travel to before a purge is gone" in capsys.readouterr().err


def test_a_new_nullable_column_merges_and_a_changed_type_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A table without one of the dataset's columns gains it on append (older rows null); a table
    whose column has another type stops the export with an error naming the column."""
    dataset = datasets_of(HANDLERS)[POSTS]
    schema = delta_schema(dataset)
    fewer = [f for f in schema.fields if f.name != "tags"]
    DeltaTable.create(str(tmp_path / "out" / POSTS), Schema(fewer), partition_by=["partition_date"])
    write_cache(tmp_path)
    assert export_main(export_args(tmp_path)) == 0
    rows = table_rows(tmp_path / "out", POSTS)
    assert "tags" in rows[0] and keys(rows) == EXPECTED[POSTS]

    other = tmp_path / "other"
    other.mkdir()
    changed = [
        f if f.name != "seq" else Field("seq", PrimitiveType("string"), nullable=True) for f in schema.fields
    ]
    DeltaTable.create(str(other / "out" / POSTS), Schema(changed), partition_by=["partition_date"])
    write_cache(other)
    capsys.readouterr()
    assert export_main(export_args(other)) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and "column seq" in error


def test_a_plain_parquet_output_is_taken_over(tmp_path: Path) -> None:
    """An output of the previous release (plain Parquet, files of 21, 22 and 23 columns in one
    partition) becomes Delta tables at the first export: no row lost or doubled, every reader
    sees every column, null where a file had none."""
    write_cache(tmp_path)
    assert export_main(export_args(tmp_path, "--format", "parquet")) == 0
    partition = next((tmp_path / "out" / POSTS).glob("partition_date=*"))
    [current] = list(partition.glob("*.parquet"))
    table = pq.read_table(current)
    older = table.drop_columns(["source", "embed_record_uri"]).slice(0, 1)
    pq.write_table(older, partition / "part-00000000000000000001.parquet")
    middle = table.drop_columns(["source"]).slice(1, 1)
    pq.write_table(middle, partition / "part-00000000000000000002.parquet")
    pq.write_table(table.slice(0, 0), current)
    write_cache(tmp_path, more_posts(300, 2))
    assert export_main(export_args(tmp_path)) == 0
    out = tmp_path / "out"
    rows = table_rows(out, POSTS)
    assert len(rows) == 4 and {r["source"] for r in rows} == {None, "firehose"}
    assert all("embed_record_uri" in r for r in rows)
    for name, expected in EXPECTED.items():
        if name != POSTS:
            assert keys(table_rows(out, name)) == expected, name
    with connect() as db:
        assert db.execute(f"SELECT count(source) FROM delta_scan('{out / POSTS}')").fetchone() == (2,)
    assert pl.scan_delta(str(out / POSTS)).collect().height == 4


def test_a_plain_parquet_export_into_delta_tables_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--format parquet on an output that holds Delta tables: exit 2 naming them, no file added
    to the output, the cache intact (a later Delta export takes it all, once)."""
    write_cache(tmp_path)
    assert export_main(export_args(tmp_path, "--keep-cache")) == 0
    before = sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file())
    write_cache(tmp_path, more_posts(300, 2))
    capsys.readouterr()
    assert export_main(export_args(tmp_path, "--format", "parquet")) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and "holds Delta tables" in error and POSTS in error
    assert sorted(p for p in (tmp_path / "out").rglob("*") if p.is_file()) == before
    assert export_main(export_args(tmp_path)) == 0
    assert len(table_rows(tmp_path / "out", POSTS)) == len(EXPECTED[POSTS]) + 2


def test_every_command_exits_0_run_after_run(tmp_path: Path) -> None:
    """Export, purge, compact, snapshot and status, ten times each as processes: never an abort
    at interpreter exit (delta-rs and pyarrow threads outliving teardown), always 0 (status
    read the tables' newest partitions and aborted once in ten before ``cli.run`` left without
    the teardown)."""
    write_cache(tmp_path)
    store = ["--cache-dir", str(tmp_path / "cache"), "--state", str(tmp_path / "state.sqlite"), "-q"]
    out = ["--out", str(tmp_path / "out")]
    commands = [
        ["syncstream.export", *store, *out],
        ["syncstream.purge", *store, *out, "--did", "did:plc:nobody"],
        ["syncstream.lake.compact", *out, "-q"],
        [
            "syncstream.lake.snapshot",
            *out,
            "--state",
            str(tmp_path / "state.sqlite"),
            "--to",
            str(tmp_path / "snapshot"),
            "-q",
        ],
        ["syncstream", "status", "--state", str(tmp_path / "state.sqlite"), *out, "--json"],
    ]
    statuses = []
    for _ in range(10):
        for arguments in commands:
            result = subprocess.run([sys.executable, "-m", *arguments], capture_output=True, check=False)
            statuses.append((arguments[0], result.returncode, result.stderr[-200:]))
    assert [s for s in statuses if s[1] != 0] == []
    assert all_rows(tmp_path / "out")


def test_the_readme_reading_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's reading example (DuckDB delta_scan offline, polars, deltalake), as written,
    reads the sample's export."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [block.split("```", 1)[0] for block in readme.split("```python\n")[1:]]
    code = next(block for block in blocks if "delta_scan" in block)
    write_cache(tmp_path)
    assert (
        export_main([*export_args(tmp_path)[:-3], "--out", str(tmp_path / "syncstream-parquet"), "-q"]) == 0
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["rows"].num_rows == len(EXPECTED[POSTS])  # type: ignore[attr-defined]


def test_no_file_under_the_output_names_a_purged_account(tmp_path: Path) -> None:
    """After exports, a compaction and a purge, no byte under the output (data files, the log
    and its checkpoints, history included) holds the purged DID: the purge's commit names
    files, not the account, and statistics are kept for time and seq columns only."""
    write_cache(tmp_path)
    assert export_main(export_args(tmp_path)) == 0
    write_cache(tmp_path, more_posts(400, 3))
    assert export_main(export_args(tmp_path)) == 0
    out = tmp_path / "out"
    compact_tables(CompactOptions(out=str(out)), datasets_of(HANDLERS).values(), now=time.time() + 3 * 86400)
    assert any(STUDY.encode() in p.read_bytes() for p in out.rglob("*") if p.is_file())
    from syncstream.purge.__main__ import main as purge_main

    store = ["--cache-dir", str(tmp_path / "cache"), "--state", str(tmp_path / "state.sqlite"), "-q"]
    assert purge_main([*store, "--out", str(out), "--did", STUDY]) == 0
    assert [str(p) for p in out.rglob("*") if p.is_file() and STUDY.encode() in p.read_bytes()] == []
    assert stray_files(out) == []
