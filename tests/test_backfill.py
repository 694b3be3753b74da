"""Backfill from a loopback PDS and PLC with the real repo.car: every record once, with
source = backfill; a record also seen live is one row; failures are per DID and retried."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import libipld
import pyarrow.dataset as pads
import pytest

from benchmarks.repos import build_repo
from syncstream.backfill.__main__ import main as backfill_main
from syncstream.backfill.fetch import Fetcher
from syncstream.backfill.repo import RepoFile, read_repo
from syncstream.errors import RepoError
from syncstream.export.__main__ import main as export_main
from syncstream.firehose.encode import OpSpec, event_frame
from syncstream.servers.keys import REHEARSAL_SEED, SigningKey, resign_car
from syncstream.servers.pds import LoopbackPds, PdsFault, parse_pds_fault
from syncstream.store import StateStore
from syncstream.verify import DidDocuments
from syncstream.write.__main__ import main as write_main
from tests.helpers import CORPUS, TIME, ManualClock, commit, from_json_model, tree, write_replay, write_users

KEY = SigningKey(REHEARSAL_SEED)
REAL_CAR = (CORPUS / "repo.car").read_bytes()
CAR = resign_car(REAL_CAR, KEY)  # the real repository's records and MST, under a key we hold
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
    "app.bsky.actor.profile": "study_user_activity/profile",
}


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite"), "-q"]


def backfill(root: Path, pds: LoopbackPds, *extra: str, study: tuple[str, ...] = (DID,)) -> int:
    users = write_users(root / "study.txt", study)
    StateStore(root / "s.sqlite").close()  # the writer's part: a backfill creates no store
    return backfill_main(
        [*store(root), "--study-users", str(users), "--plc-url", pds.url, "--timeout", "5", *extra]
    )


def fetcher(plc_url: str, **options: Any) -> Fetcher:
    """A fetcher for a rehearsal: the loopback PLC directory and PDS."""
    return Fetcher(DidDocuments(plc_url), endpoints="any", **options)


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
    """Every post, like, repost, follow and profile of the repository is a row once, source backfill, the
    repository's rev, no seq; a second run adds nothing; the same record seen live adds no row."""
    with LoopbackPds({DID: CAR}, key=KEY) as pds:
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
def test_a_fault_fails_that_did_while_the_others_complete(tmp_path: Path, fault: str) -> None:
    """The faulty DID is recorded failed with its reason (exit 1) while another repository of the
    same PDS completes and an unresolvable DID fails alone; an explicit rerun against a sound
    PDS completes the faulty one."""
    did, parsed = parse_pds_fault(f"{DID}:{fault}")
    assert did == DID
    unknown = "did:plc:nobodynobodynobodynobody"
    other = "did:plc:otherotherotherotherothe"
    with LoopbackPds({DID: CAR, other: build_repo(other, 40)}, {DID: parsed}, key=KEY) as pds:
        everyone = (DID, other, unknown)
        assert backfill(tmp_path, pds, "--did", DID, "--did", other, "--did", unknown, study=everyone) == 1
    with StateStore(tmp_path / "s.sqlite") as state:
        recorded = state.backfills.recorded()
    assert recorded[DID][0] == "failed" and recorded[DID][2]
    assert recorded[unknown][0] == "failed"
    assert recorded[other][0] == "done"
    with LoopbackPds({DID: CAR}, key=KEY) as pds:
        assert backfill(tmp_path, pds, "--did", DID) == 0
    with StateStore(tmp_path / "s.sqlite") as state:
        assert (
            state.backfills.recorded()[DID][:2] == ("done", REV) and state.backfills.recorded()[DID][3] == 2
        )


def test_a_failed_did_is_retried_after_its_backoff(tmp_path: Path) -> None:
    """Without --did, a DID that failed a moment ago waits (a run that backfills nothing so is
    exit 1); once its backoff is past, it is retried."""
    with LoopbackPds({DID: CAR}, {DID: PdsFault("error", 500)}, key=KEY) as pds:
        assert backfill(tmp_path, pds) == 1
    with LoopbackPds({DID: CAR}, key=KEY) as pds:
        assert backfill(tmp_path, pds) == 1
        assert pds.requests == []  # waiting: failed less than a minute ago
        with closing(sqlite3.connect(tmp_path / "s.sqlite")) as db, db:
            db.execute("UPDATE backfills SET updated_at = updated_at - 61")
        assert backfill(tmp_path, pds) == 0
        assert pds.requests == [DID]
    with StateStore(tmp_path / "s.sqlite") as state:
        assert state.backfills.recorded()[DID][0] == "done"


def test_a_slow_pds_is_waited_for(tmp_path: Path) -> None:
    """The slow fault delays getRepo; the backfill still completes."""
    with LoopbackPds({DID: CAR}, {DID: PdsFault("slow", 0.3)}, key=KEY) as pds:
        assert backfill(tmp_path, pds) == 0


def test_a_sync_frame_asks_for_a_fresh_backfill(tmp_path: Path) -> None:
    """A #sync frame of a backfilled study user marks it pending; the next run fetches its
    repository again, and the export adds no row for what was already there."""
    with LoopbackPds({DID: CAR}, key=KEY) as pds:
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
        with StateStore(tmp_path / "s.sqlite") as state:
            assert state.backfills.recorded()[DID][0] == "pending"
        assert backfill(tmp_path, pds) == 0
        assert pds.requests == [DID, DID]
        assert export_main([*store(tmp_path), "--out", str(tmp_path / "out")]) == 0
        assert sorted((r["uri"], r["cid"]) for r in rows(tmp_path)) == before


def test_a_writer_holds_live_commits_until_the_backfill_is_done(tmp_path: Path) -> None:
    """While a study user's repository is fetched, its live commits wait and the cursor stays
    before the first of them; once the backfill is written they are applied, in order."""
    from syncstream.write.backfill import BackgroundBackfill
    from syncstream.write.context import setup_cache_write_system
    from syncstream.write.writer import CacheWriter

    live_post = commit(100, DID, OpSpec("create", "app.bsky.feed.post/3live", {"$type": "app.bsky.feed.post",
                                                                             "text": "live", "createdAt": TIME}))  # fmt: skip
    other = commit(101, "did:plc:someoneelse", OpSpec("create", "app.bsky.feed.post/3x", {"text": "x"}))
    with (
        LoopbackPds({DID: CAR}, {DID: PdsFault("slow", 1.0)}, key=KEY) as pds,
        setup_cache_write_system(tmp_path / "cache", tmp_path / "s.sqlite",
                                 study_users=write_users(tmp_path / "study.txt", [DID])) as context,
    ):  # fmt: skip
        writer = CacheWriter(context, durable=False)
        backfill = BackgroundBackfill(writer, fetcher(pds.url), concurrency=2)
        backfill.enqueue(backfill.wanted())
        backfill.poll()  # its job starts: from now on its live commits are held
        writer.process_frame(live_post)
        writer.process_frame(other)
        writer.flush()
        assert context.state.cursors.get() == 99  # not past the held commit
        assert tree(tmp_path / "cache") == set()
        backfill.drain()
        writer.flush()
        assert context.state.cursors.get() == 101
        files = tree(tmp_path / "cache")
        assert (
            "study_user_activity/create/post/author_did=did:plc:53iucmf5ldftgqyf2ac7hmhd_post_uri_suffix=3live.json"
            in files
        )
        assert len(files) > 10 and context.state.backfills.recorded()[DID][:2] == ("done", REV)
        backfill.close()


def test_a_hold_that_outlives_its_seconds_fails_the_backfill(tmp_path: Path) -> None:
    """Its hold's seconds are measured on the writer's clock: until they pass, the DID stays
    held; past them its backfill fails (retried later) and its held commit is written."""
    from syncstream.write.backfill import BackgroundBackfill
    from syncstream.write.context import setup_cache_write_system
    from syncstream.write.holds import HoldLimits
    from syncstream.write.writer import CacheWriter
    from tests.helpers import post

    clock = ManualClock(start=1000.0)
    with (
        LoopbackPds({DID: CAR}, {DID: PdsFault("trickle", 0.05)}, key=KEY) as pds,
        setup_cache_write_system(tmp_path / "cache", tmp_path / "s.sqlite",
                                 study_users=write_users(tmp_path / "study.txt", [DID])) as context,
    ):  # fmt: skip
        writer = CacheWriter(context, durable=False, hold_limits=HoldLimits(seconds=60), clock=clock)
        backfill = BackgroundBackfill(writer, fetcher(pds.url))
        backfill.enqueue([DID])
        backfill.poll()
        writer.process_frame(commit(100, DID, OpSpec("create", "app.bsky.feed.post/3live", post("live"))))
        clock.now += 60
        backfill.poll()
        assert writer.holds.dids() == [DID] and DID in backfill.running
        clock.now += 0.5
        backfill.poll()
        assert writer.holds.dids() == [] and DID not in backfill.running
        status, _, reason, _ = context.state.backfills.recorded()[DID]
        assert status == "failed" and "outlived the 60s its live commits may be held" in (reason or "")
        writer.flush()
        assert context.state.cursors.get() == 100
        assert len(tree(tmp_path / "cache")) == 1
        backfill.close()


def test_the_write_command_backfills_with_backfill(tmp_path: Path) -> None:
    """python -m syncstream.write --backfill: the study user's history and its live commits,
    both in the cache; the backfill is recorded done."""
    post = commit(100, DID, OpSpec("create", "app.bsky.feed.post/3live", {"$type": "app.bsky.feed.post",
                                                                        "text": "live", "createdAt": TIME}))  # fmt: skip
    with LoopbackPds({DID: CAR}, {DID: PdsFault("slow", 0.5)}, key=KEY) as pds:
        args = [*store(tmp_path), "--no-sync", "--replay", str(write_replay(tmp_path / "r.bin", [post])),
                "--study-users", str(write_users(tmp_path / "study.txt", [DID])), "--backfill", "--plc-url", pds.url]  # fmt: skip
        assert write_main(args) == 0
    assert export_main([*store(tmp_path), "--out", str(tmp_path / "out")]) == 0
    found = rows(tmp_path)
    assert {r["source"] for r in found} == {"backfill", "firehose"}
    assert [r["uri"] for r in found if r["source"] == "firehose"] == [f"at://{DID}/app.bsky.feed.post/3live"]


def test_a_user_added_on_sighup_is_backfilled_while_frames_flow(tmp_path: Path) -> None:
    """A live writer with --backfill: a study user added to the user file and SIGHUP is
    backfilled from its PDS, while the relay's frames keep being written."""
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import ROOT, corpus_frames

    sample = (ROOT / "syncstream" / "data" / "sample_study_users.txt").read_text().split()
    study = write_users(tmp_path / "study.txt", [d for d in sample if d.startswith("did:")])
    replay = write_replay(tmp_path / "r.bin", corpus_frames())
    with (
        LoopbackPds({DID: CAR}, key=KEY) as pds,
        subprocess.Popen([sys.executable, "-m", "syncstream.servers.relay", "--replay", str(replay), "--rate", "25"],
                         stdout=subprocess.PIPE, text=True) as relay,
    ):  # fmt: skip
        try:
            assert relay.stdout is not None
            url = relay.stdout.readline().split(" at ")[1].strip()
            command = [sys.executable, "-m", "syncstream.write", *store(tmp_path), "--study-users", str(study),
                       "--relay", url, "--backfill", "--plc-url", pds.url, "--flush-seconds", "0.2"]  # fmt: skip
            with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as writer:
                try:
                    deadline = time.monotonic() + 30
                    while not tree(tmp_path / "cache") and time.monotonic() < deadline:
                        time.sleep(0.05)
                    (tmp_path / "study.txt").write_text(study.read_text() + DID + "\n")
                    writer.send_signal(signal.SIGHUP)
                    done_at = None
                    while done_at is None and time.monotonic() < deadline:
                        time.sleep(0.1)
                        with StateStore(tmp_path / "s.sqlite") as state:
                            if state.backfills.recorded().get(DID, ("",))[0] == "done":
                                done_at = state.cursors.get(f"cursor:{url.split('://')[1].split('/')[0]}")
                    assert done_at is not None, "the newcomer was not backfilled"
                    cursor = f"cursor:{url.split('://')[1].split('/')[0]}"
                    while time.monotonic() < deadline:  # frames keep flowing after it
                        time.sleep(0.1)
                        with StateStore(tmp_path / "s.sqlite") as state:
                            if (state.cursors.get(cursor) or 0) > done_at:
                                break
                finally:
                    writer.send_signal(signal.SIGTERM)
                    writer.communicate(timeout=30)
            assert writer.returncode == 0
        finally:
            relay.send_signal(signal.SIGTERM)
            relay.wait(timeout=10)
    with StateStore(tmp_path / "s.sqlite") as state:
        later = state.cursors.get(f"cursor:{url.split('://')[1].split('/')[0]}")
    assert later is not None and done_at is not None and later > done_at
    backfilled = [p for p in tree(tmp_path / "cache") if f"author_did={DID}" in p]
    assert len(backfilled) >= 10


def test_a_backfill_starts_the_accounts_chain(tmp_path: Path) -> None:
    """The repository's rev and MST root are the account's chain once it is backfilled: the
    verified stream takes it up there (a restart, or a later write, included)."""
    with LoopbackPds({DID: CAR}, key=KEY) as pds:
        assert backfill(tmp_path, pds) == 0
    repo = RepoFile(CAR)
    try:
        data = repo.data
    finally:
        repo.close()
    with StateStore(tmp_path / "s.sqlite") as state:
        assert state.chains.get(DID) == (REV, data)


def test_each_record_is_hashed_again_as_it_is_written(tmp_path: Path) -> None:
    """A record block changed in the scratch file after the tree was checked: the walk that
    hands records over refuses it (what is written is what the signed tree names)."""
    path = tmp_path / "repo.car"
    path.write_bytes(CAR)
    repo = RepoFile(path, scratch=tmp_path)
    try:
        assert repo.check() == len(EXPECTED)
        first = next(r for r in read_repo(CAR).records)
        raw = repo.raw(_cid(first.cid))
        at = CAR.index(raw)
        path.write_bytes(CAR[:at] + bytes((CAR[at] ^ 1,)) + CAR[at + 1 :])
        with pytest.raises(RepoError, match="does not match its CID"):
            list(repo.records())
    finally:
        repo.close()


def _cid(text: str) -> bytes:
    decoded = libipld.decode_cid(text)
    digest: bytes = decoded["hash"]["digest"]
    return bytes((1, decoded["codec"], 0x12, 0x20)) + digest
