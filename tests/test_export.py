"""``python -m syncstream.export``: every dataset, read back with pyarrow and DuckDB."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from syncstream.cache import WriterLock
from syncstream.export.__main__ import main as export_main
from syncstream.export.batch import export_batch
from syncstream.export.context import setup_batch_export_system
from syncstream.export.tables import schema_of
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.handlers import datasets_of
from syncstream.store import StateStore
from syncstream.write.__main__ import main as write_main
from tests.helpers import (
    TIME,
    all_files,
    export_options,
    tree,
)
from tests.scenario import (
    BLOCKED_PIN,
    EXPECTED,
    P1,
    ROWS,
    STRANGER,
    STUDY,
    export_args,
    keys,
    rich_post,
    write_cache,
)


def read_dataset(out: Path, name: str) -> list[dict[str, Any]]:
    dataset = ds.dataset(out / name, format="parquet", partitioning="hive")
    rows: list[dict[str, Any]] = dataset.to_table().to_pylist()
    return rows


def test_every_dataset_with_creates_and_deletes(tmp_path: Path) -> None:
    """Each dataset holds exactly its creates and deletes, with its schema, readable with pyarrow."""
    write_cache(tmp_path)
    assert export_main(export_args(tmp_path)) == 0
    out = tmp_path / "out"
    for dataset in datasets_of(HANDLERS).values():
        rows = read_dataset(out, dataset.name)
        assert keys(rows) == EXPECTED[dataset.name], dataset.name
        assert len(rows) == len(EXPECTED[dataset.name])
        for path in (out / dataset.name).rglob("*.parquet"):
            assert pq.read_schema(path).remove_metadata() == schema_of(dataset)
            assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    assert tree(tmp_path / "cache") == set()


def test_columns_of_a_profile_and_a_block(tmp_path: Path) -> None:
    """A study user's profile is a row per version, with its names, avatar and pinned post; a
    block carries whom it blocks and when; a delete of a block is a row with nulls. (The
    scenario deletes the block: its content is kept to be seen.)"""
    write_cache(tmp_path)
    assert export_main(export_args(tmp_path, "--keep-deleted-content")) == 0
    profiles = {r["operation"]: r for r in read_dataset(tmp_path / "out", "study_user_activity/profile")}
    created = profiles["create"]
    assert (created["display_name"], created["description"][:13], created["avatar_cid"]) == (
        "Multiversal Lokis Unit🔞",
        "Damian Lokiso",
        "bafkreieajxclqzwk2mczx7hxmoboqpuiveqlbm35gsda5xlaqfmlryu4ri",
    )
    assert created["pinned_post_uri"] == BLOCKED_PIN
    assert (profiles["update"]["display_name"], profiles["update"]["rkey"]) == ("new", "self")
    assert profiles["create"]["cid"] != profiles["update"]["cid"]
    blocks = {r["operation"]: r for r in read_dataset(tmp_path / "out", "study_user_activity/block")}
    assert (blocks["create"]["blocked_did"], blocks["create"]["created_at"]) == (
        STRANGER,
        "2026-05-25T14:23:27.379Z",
    )
    assert (blocks["delete"]["blocked_did"], blocks["delete"]["record_json"]) == (None, None)
    assert {r["author_did"] for r in [*profiles.values(), *blocks.values()]} == {STUDY}


def test_columns_of_a_post_and_a_follow(tmp_path: Path) -> None:
    """Post and follow columns carry the record's fields; deletes have a null record_json.
    (The scenario deletes both: their content is kept to be seen.)"""
    write_cache(tmp_path)
    assert export_main(export_args(tmp_path, "--keep-deleted-content")) == 0
    posts = {r["operation"]: r for r in read_dataset(tmp_path / "out", "study_user_activity/post")}
    created = posts["create"]
    assert (created["text"], created["langs"], created["tags"], created["labels"]) == (
        "hello #world",
        ["en", "de"],
        ["science"],
        ["nudity"],
    )
    assert created["embed_type"] == "app.bsky.embed.external"
    assert json.loads(created["facets_json"])[0]["features"][0]["tag"] == "world"
    assert json.loads(created["record_json"]) == rich_post()
    assert (created["created_at"], created["seq"], created["author_did"], created["rkey"]) == (
        TIME,
        10,
        STUDY,
        "3p1",
    )
    assert created["event_time"].isoformat() == "2026-07-04T14:38:07.517000+00:00"
    assert str(created["partition_date"]) == created["synctimestamp"].date().isoformat()
    assert posts["delete"]["record_json"] is None and posts["delete"]["cid"] is None
    follows = {
        (r["operation"], r["follow_status"]): r
        for r in read_dataset(tmp_path / "out", "scraped_user_social_network/follow")
    }
    assert (follows["create", "followee"]["follower_did"], follows["create", "followee"]["followee_did"]) == (
        STRANGER,
        STUDY,
    )
    assert follows["delete", "follower"]["follower_did"] == STUDY
    replies = read_dataset(tmp_path / "out", "study_user_activity/reply_to_user_post")
    assert {r["reply_parent_uri"] for r in replies} == {P1, None}


def test_duckdb_reads_every_dataset_with_hive_partitioning(tmp_path: Path) -> None:
    """DuckDB's read_parquet(..., hive_partitioning = true) sees every row and a date partition."""
    write_cache(tmp_path)
    assert export_main(export_args(tmp_path)) == 0
    with duckdb.connect() as db:
        for name, expected in EXPECTED.items():
            glob = str(tmp_path / "out" / name / "*" / "*.parquet")
            identity = (
                "uri, operation"
                if name != "population/account_event"
                else "'at://' || did || '/#' || event || '/' || seq, 'create'"
            )
            rows = db.execute(
                f"SELECT {identity}, typeof(partition_date), typeof(seq) FROM read_parquet('{glob}', hive_partitioning = true)"
            ).fetchall()
            assert {(u, o) for u, o, _, _ in rows} == {(u, o) for u, o, _ in expected}
            assert {(t, s) for _, _, t, s in rows} == {("DATE", "BIGINT")}


def test_second_export_and_replayed_events_add_no_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exporting again adds nothing; a writer replaying exported events adds no duplicate rows."""
    args = write_cache(tmp_path)
    assert export_main(export_args(tmp_path)) == 0
    assert export_main(export_args(tmp_path)) == 0
    with StateStore(tmp_path / "state.sqlite") as state:
        state.cursors.set(0)  # the writer restarts behind what it already wrote: the relay replays
    assert write_main(args) == 0
    assert len(tree(tmp_path / "cache")) == ROWS
    capsys.readouterr()
    assert export_main(export_args(tmp_path)) == 0
    assert f"exported 0 rows from {ROWS} cache files" in capsys.readouterr().out
    assert tree(tmp_path / "cache") == set()
    for name, expected in EXPECTED.items():
        assert len(read_dataset(tmp_path / "out", name)) == len(expected)


def test_keep_cache_leaves_files_and_still_exports_once(tmp_path: Path) -> None:
    """--keep-cache exports without removing; a later export adds no rows and removes them."""
    write_cache(tmp_path)
    before = tree(tmp_path / "cache")
    assert export_main(export_args(tmp_path, "--keep-cache")) == 0
    assert tree(tmp_path / "cache") == before
    assert export_main(export_args(tmp_path)) == 0
    assert tree(tmp_path / "cache") == set()
    assert sum(len(read_dataset(tmp_path / "out", n)) for n in EXPECTED) == ROWS


def test_dry_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run counts rows but writes no Parquet and leaves the cache as it was."""
    write_cache(tmp_path)
    before = tree(tmp_path / "cache")
    assert export_main(export_args(tmp_path, "--dry-run")) == 0
    assert f"would export {ROWS} rows from {ROWS} cache files" in capsys.readouterr().out
    assert tree(tmp_path / "cache") == before
    assert not (tmp_path / "out").exists()


def test_clear_cache_refuses_beside_a_writer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--clear-cache while a writer holds the cache exits 1 and exports nothing; alone it resets."""
    write_cache(tmp_path)
    before = tree(tmp_path / "cache")
    with WriterLock(str(tmp_path / "cache")):
        assert export_main(export_args(tmp_path, "--clear-cache")) == 1
    assert "held by a running writer; nothing was exported" in capsys.readouterr().err
    assert tree(tmp_path / "cache") == before
    stray = tmp_path / "cache" / "study_user_activity" / "stray.txt"
    stray.write_text("x")  # no handler reads it: the export stops, and nothing is removed
    assert export_main(export_args(tmp_path, "--clear-cache")) == 2
    assert "holds what no handler of the registry given reads: study_user_activity/stray.txt" in (
        capsys.readouterr().err
    )
    assert tree(tmp_path / "cache") == before | {"study_user_activity/stray.txt"}
    stray.unlink()
    assert export_main(export_args(tmp_path, "--clear-cache")) == 0
    assert tree(tmp_path / "cache") == set()
    assert (tmp_path / "cache" / "study_user_activity" / "create" / "post").is_dir()
    assert sum(len(read_dataset(tmp_path / "out", n)) for n in EXPECTED) == ROWS


def test_storage_failure_leaves_the_cache_intact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """When Parquet cannot be written the command exits 1 and every cache file is back in place."""
    write_cache(tmp_path)
    before = {p: p.read_bytes() for p in all_files(tmp_path / "cache") if not p.name.startswith(".")}
    (tmp_path / "out").write_text("a file where the output directory should be")
    assert export_main(export_args(tmp_path)) == 1
    assert "export failed" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in all_files(tmp_path / "cache") if not p.name.startswith(".")} == before
    staging = tmp_path / "cache" / ".export"  # (the output's lock refused first: none made)
    assert not staging.exists() or list(staging.iterdir()) == []


def test_unreadable_cache_file_is_set_aside(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file in the tree that is not a record is counted and moved aside, not exported or lost."""
    write_cache(tmp_path)
    junk = tmp_path / "cache/study_user_activity/create/post/author_did=did:plc:x_post_uri_suffix=3z.json"
    junk.write_bytes(b"{not json")
    assert export_main(export_args(tmp_path)) == 0
    assert "files set aside (not exportable, in .set-aside/): 1" in capsys.readouterr().out
    assert [p.read_bytes() for p in (tmp_path / "cache/.set-aside").iterdir()] == [b"{not json"]


def test_library_call_returns_the_summary(tmp_path: Path) -> None:
    """export_batch returns per-dataset rows, files and bytes as a value, in small batches too."""
    write_cache(tmp_path)
    with setup_batch_export_system(export_options(tmp_path, state="state.sqlite", batch_files=3)) as context:
        summary = export_batch(context)
    assert summary.rows == summary.cache_files == ROWS and summary.batches == -(-ROWS // 3)
    assert {name: s.rows for name, s in summary.datasets.items()} == {n: len(e) for n, e in EXPECTED.items()}
    assert all(s.bytes > 0 and s.files >= 1 for s in summary.datasets.values())


def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing cache exits 2 with one line; nonsense options are usage errors."""
    assert (
        export_main(
            [
                "--cache-dir",
                str(tmp_path / "none"),
                "--state",
                str(tmp_path / "s"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.strip() == f"error: no cache at {tmp_path / 'none'}"
    for bad in (["--batch-files", "0"], ["--clear-cache", "--dry-run"], ["--nope"]):
        with pytest.raises(SystemExit) as exit_info:
            export_main(bad)
        assert exit_info.value.code == 2
