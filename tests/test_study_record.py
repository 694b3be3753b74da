"""The study's record as tables: the export replaces each store's rows of collection/coverage and
population/membership with the state's record, one commit per table that changed, read back by
deltalake and DuckDB; shards keep their own rows; a plain-Parquet output has none."""

from __future__ import annotations

from pathlib import Path

from deltalake import DeltaTable

from syncstream.export.__main__ import main as export_main
from syncstream.firehose.encode import OpSpec
from syncstream.lake.study_record import COVERAGE, MEMBERSHIP
from syncstream.purge.__main__ import main as purge_main
from syncstream.write.__main__ import main as write_main
from tests.helpers import commit, export_args, post, write_args
from tests.tables import connect, stray_files, table_rows

STUDY = "did:plc:53iucmf5ldftgqyf2ac7hmhd"
SHARD = "did:plc:z72i7hdynmk6r22z27h6tvur"


def posts(did: str, seqs: range) -> list[bytes]:
    return [commit(seq, did, OpSpec("create", f"app.bsky.feed.post/3p{seq}", post(f"{seq}"))) for seq in seqs]


def version(out: Path, name: str) -> int:
    table = DeltaTable(str(out / name))
    number = table.version()
    del table
    return number


def test_each_export_replaces_the_record_and_an_unchanged_one_commits_nothing(tmp_path: Path) -> None:
    """The first export writes both tables; one with nothing new commits neither; after more
    frames only coverage changes (its run grew), one row still, its frames the total."""
    assert write_main(write_args(tmp_path, posts(STUDY, range(10, 20)), [STUDY])) == 0
    out = tmp_path / "out"
    assert export_main(export_args(tmp_path)) == 0
    first = (version(out, COVERAGE), version(out, MEMBERSHIP))
    assert export_main(export_args(tmp_path)) == 0
    assert (version(out, COVERAGE), version(out, MEMBERSHIP)) == first
    assert write_main(write_args(tmp_path, posts(STUDY, range(10, 30)), [STUDY])) == 0
    assert export_main(export_args(tmp_path)) == 0
    assert version(out, COVERAGE) > first[0] and version(out, MEMBERSHIP) == first[1]
    with connect() as db:
        runs = db.execute(
            f"SELECT kind, first_seq, last_seq, frames, reason, source FROM delta_scan('{out / COVERAGE}') "
            "ORDER BY first_seq"
        ).fetchall()
    assert runs == [
        ("covered", 10, 19, 10, "first start", "replay"),
        ("covered", 20, 29, 10, "resumed", "replay"),
    ]
    (spell,) = table_rows(out, MEMBERSHIP)
    assert (spell["did"], spell["role"], spell["from_seq"], spell["to_seq"], spell["how"]) == (
        STUDY, "study", 10, None, "users file",
    )  # fmt: skip
    assert stray_files(out) == []


def test_shards_exporting_into_one_lake_each_keep_their_own_record(tmp_path: Path) -> None:
    """Two stores export into one output: each replaces only its rows, tagged with its store."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    assert write_main(write_args(first, posts(STUDY, range(10, 15)), [STUDY])) == 0
    assert write_main(write_args(second, posts(SHARD, range(100, 103)), [SHARD])) == 0
    out = tmp_path / "out"
    for root in (first, second, first):
        assert export_main([*export_args(root)[:-2], "--out", str(out)]) == 0
    assert write_main(write_args(first, posts(STUDY, range(10, 18)), [STUDY])) == 0
    assert export_main([*export_args(first)[:-2], "--out", str(out)]) == 0
    coverage = sorted((r["first_seq"], r["last_seq"], r["frames"]) for r in table_rows(out, COVERAGE))
    assert coverage == [(10, 14, 5), (15, 17, 3), (100, 102, 3)]
    stores = {r["store"] for r in table_rows(out, COVERAGE)}
    assert len(stores) == 2
    assert sorted((r["did"], r["from_seq"]) for r in table_rows(out, MEMBERSHIP)) == [
        (STUDY, 10),
        (SHARD, 100),
    ]
    assert stray_files(out) == []


def test_a_plain_parquet_output_gets_no_record_tables(tmp_path: Path) -> None:
    """--format parquet has no atomic replace: the record stays in the state only."""
    assert write_main(write_args(tmp_path, posts(STUDY, range(10, 12)), [STUDY])) == 0
    assert export_main([*export_args(tmp_path), "--format", "parquet"]) == 0
    assert not (tmp_path / "out" / COVERAGE).exists()
    assert not (tmp_path / "out" / MEMBERSHIP).exists()
    assert (tmp_path / "out" / "study_user_activity" / "post").is_dir()


def test_a_purge_erases_the_account_from_every_stores_membership_rows(tmp_path: Path) -> None:
    """Two stores share a member: purged from one, it leaves the other's rows too (no byte of
    the DID under the table) and that store's other rows stay; the other store's own record
    holds it until it is purged there too."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    out = tmp_path / "out"
    assert write_main(write_args(first, posts(STUDY, range(10, 15)), [STUDY, SHARD])) == 0
    assert write_main(write_args(second, posts(SHARD, range(100, 103)), [SHARD])) == 0
    for root in (first, second):
        assert export_main([*export_args(root)[:-2], "--out", str(out)]) == 0
    purge = ["--cache-dir", str(second / "cache"), "--state", str(second / "s.sqlite"), "--out", str(out)]
    assert purge_main([*purge, "--did", SHARD]) == 0
    files = [p for p in (out / MEMBERSHIP).rglob("*") if p.is_file()]
    assert files and not [p for p in files if SHARD.encode() in p.read_bytes()]
    left = sorted((r["did"] or "", r["left_how"] or "") for r in table_rows(out, MEMBERSHIP))
    assert left == [("", "withdrawal"), (STUDY, "")]
    # The other store's own state still holds the account: its next change of record writes
    # it back until the account is purged there too (a purge is of one store: docs/guarantees.md).
    assert write_main(write_args(first, posts(STUDY, range(10, 17)), [STUDY])) == 0  # its spell closes
    assert export_main([*export_args(first)[:-2], "--out", str(out)]) == 0
    assert sorted(r["did"] or "" for r in table_rows(out, MEMBERSHIP)) == ["", STUDY, SHARD]
    purge = ["--cache-dir", str(first / "cache"), "--state", str(first / "s.sqlite"), "--out", str(out)]
    assert purge_main([*purge, "--did", SHARD]) == 0
    assert export_main([*export_args(first)[:-2], "--out", str(out)]) == 0
    assert sorted(r["did"] or "" for r in table_rows(out, MEMBERSHIP)) == ["", "", STUDY]
    files = [p for p in (out / MEMBERSHIP).rglob("*") if p.is_file()]
    assert not [p for p in files if SHARD.encode() in p.read_bytes()]
    assert stray_files(out) == []
