"""Backfill from a loopback PDS and PLC with the real repo.car: every record once, with
source = backfill; a record also seen live is one row; failures are per DID and retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.dataset as pads
import pytest

from syncstream.backfill.__main__ import main as backfill_main
from syncstream.backfill.repo import RepoError, read_repo
from syncstream.export.__main__ import main as export_main
from syncstream.pds import LoopbackPds, PdsFault, parse_pds_fault
from syncstream.state import StateStore
from syncstream.write.__main__ import main as write_main
from syncstream.write.encode import OpSpec, event_frame
from tests.helpers import CORPUS, TIME, commit, from_json_model, tree, write_replay, write_users

CAR = (CORPUS / "repo.car").read_bytes()
DID = "did:plc:53iucmf5ldftgqyf2ac7hmhd"
REV = "3migo7fijwi2k"
EXPECTED = [
    tuple(line.split("\t")) for line in (CORPUS / "car_expected_records.tsv").read_text().splitlines()
]
KEPT = {  # what the registry keeps of a study user's own records, and where
    "app.bsky.feed.post": "study_user_activity/post",
    "app.bsky.feed.like": "study_user_activity/like",
    "app.bsky.feed.repost": "study_user_activity/repost",
    "app.bsky.graph.follow": "scraped_user_social_network/follow",
}


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite"), "-q"]


def backfill(root: Path, pds: LoopbackPds, *extra: str) -> int:
    study = write_users(root / "study.txt", [DID])
    return backfill_main(
        [*store(root), "--study-users", str(study), "--plc-url", pds.url, "--timeout", "5", *extra]
    )


def rows(root: Path) -> list[dict[str, Any]]:
    found = []
    for name in set(KEPT.values()):
        if (root / "out" / name).is_dir():
            found += pads.dataset(root / "out" / name, partitioning="hive").to_table().to_pylist()
    return found


def test_the_walk_finds_exactly_the_records_an_independent_walk_found() -> None:
    """repo.car walked by its MST gives the DID, the rev and every (key, cid) of the fixture."""
    repo = read_repo(CAR)
    assert (repo.did, repo.rev) == (DID, REV)
    assert [(f"{r.collection}/{r.rkey}", r.cid) for r in repo.records] == EXPECTED


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda car: car[: len(car) // 2], "missing|does not parse|truncated"),
        (lambda car: car[:-5] + bytes(5), "does not match its CID|does not parse"),
        (lambda car: b"\x00" + car, "header|root"),
    ],
)
def test_a_damaged_car_is_refused_whole(damage: Any, message: str) -> None:
    """A truncated CAR, a block that does not match its CID, a broken header: RepoError, no records."""
    with pytest.raises(RepoError, match=message):
        read_repo(damage(CAR))


def test_backfill_exports_every_record_once_with_source_backfill(tmp_path: Path) -> None:
    """Every post, like, repost and follow of the repository is a row once, source backfill, the
    repository's rev, no seq; a second run adds nothing; the same record seen live adds no row."""
    with LoopbackPds({DID: CAR}) as pds:
        assert backfill(tmp_path, pds) == 0
        assert export_main([*store(tmp_path), "--out", str(tmp_path / "out")]) == 0
        first = rows(tmp_path)
        expected = {(f"at://{DID}/{key}", cid) for key, cid in EXPECTED if key.split("/")[0] in KEPT}
        assert len(expected) >= 10
        assert sorted((r["uri"], r["cid"]) for r in first) == sorted(expected)
        assert {(r["source"], r["rev"], r["seq"], r["operation"]) for r in first} == {
            ("backfill", REV, None, "create")
        }
        assert backfill(tmp_path, pds) == 0  # done: skipped
        assert pds.requests == [DID]
    like = next(r for r in read_repo(CAR).records if r.collection == "app.bsky.feed.like")
    frame = commit(
        10**10, DID, OpSpec("create", f"app.bsky.feed.like/{like.rkey}", from_json_model(like.record))
    )
    replay = write_replay(tmp_path / "live.bin", [frame])
    assert write_main([*store(tmp_path), "--no-sync", "--replay", str(replay)]) == 0
    assert len(tree(tmp_path / "cache")) == 1  # written live, as its own cache file
    assert export_main([*store(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert sorted((r["uri"], r["cid"]) for r in rows(tmp_path)) == sorted(expected)


@pytest.mark.parametrize("fault", ["down", "error:502", "truncated"])
def test_a_fault_fails_that_did_and_the_next_run_retries_it(tmp_path: Path, fault: str) -> None:
    """The faulty DID is recorded failed with its reason (exit 1) while another DID that cannot be
    resolved fails alone; a later run against a sound PDS completes it."""
    did, parsed = parse_pds_fault(f"{DID}:{fault}")
    assert did == DID
    unknown = "did:plc:nobodynobodynobodynobody"
    with LoopbackPds({DID: CAR}, {DID: parsed}) as pds:
        assert backfill(tmp_path, pds, "--did", DID, "--did", unknown) == 1
    state = StateStore(tmp_path / "s.sqlite")
    try:
        recorded = state.backfills()
    finally:
        state.close()
    assert recorded[DID][0] == "failed" and recorded[DID][2]
    assert recorded[unknown][0] == "failed"
    with LoopbackPds({DID: CAR}) as pds:
        assert backfill(tmp_path, pds, "--did", DID) == 0
    state = StateStore(tmp_path / "s.sqlite")
    try:
        assert state.backfills()[DID][:2] == ("done", REV) and state.backfills()[DID][3] == 2
    finally:
        state.close()


def test_a_slow_pds_is_waited_for(tmp_path: Path) -> None:
    """The slow fault delays getRepo; the backfill still completes."""
    with LoopbackPds({DID: CAR}, {DID: PdsFault("slow", 0.3)}) as pds:
        assert backfill(tmp_path, pds) == 0


def test_a_sync_frame_asks_for_a_fresh_backfill(tmp_path: Path) -> None:
    """A #sync frame of a backfilled study user marks it pending; the next run fetches its
    repository again, and the export adds no row for what was already there."""
    with LoopbackPds({DID: CAR}) as pds:
        assert backfill(tmp_path, pds) == 0
        assert export_main([*store(tmp_path), "--out", str(tmp_path / "out")]) == 0
        before = sorted((r["uri"], r["cid"]) for r in rows(tmp_path))
        sync = event_frame("sync", seq=10**10, did=DID, time=TIME, rev=REV, blocks=b"")
        assert (
            write_main(
                [*store(tmp_path), "--no-sync", "--replay", str(write_replay(tmp_path / "s.bin", [sync]))]
            )
            == 0
        )
        state = StateStore(tmp_path / "s.sqlite")
        try:
            assert state.backfills()[DID][0] == "pending"
        finally:
            state.close()
        assert backfill(tmp_path, pds) == 0
        assert pds.requests == [DID, DID]
        assert export_main([*store(tmp_path), "--out", str(tmp_path / "out")]) == 0
        assert sorted((r["uri"], r["cid"]) for r in rows(tmp_path)) == before
