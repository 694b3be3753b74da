"""Purges: a withdrawn or deleted account leaves the population, the cache, the state and every
dataset, with everything collected because of it; every other row stays, exactly once."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from syncstream.cache import WriterLock
from syncstream.export.__main__ import main as export_main
from syncstream.firehose.encode import OpSpec, event_frame
from syncstream.purge.__main__ import main as purge_main
from syncstream.store import StateStore
from syncstream.write.__main__ import main as write_main
from tests.helpers import (
    TIME,
    commit,
    follow,
    from_json_model,
    golden_record,
    like,
    post,
    quote,
    repost,
    tree,
    write_replay,
    write_users,
)
from tests.tables import all_rows, stray_files

A, B, FRIEND, STRANGER = "did:plc:alice", "did:plc:bob", "did:plc:friend", "did:plc:stranger"
PA, PB = f"at://{A}/app.bsky.feed.post/3pa", f"at://{B}/app.bsky.feed.post/3pb"
PROFILE = from_json_model(golden_record("app.bsky.actor.profile"))
BLOCK = golden_record("app.bsky.graph.block")


def frames(first: int = 10) -> list[bytes]:
    """Two study users, an in-network user and a stranger, all touching one another."""
    ops: list[tuple[str, OpSpec]] = [
        (A, OpSpec("create", "app.bsky.feed.post/3pa", post("by alice"))),
        (B, OpSpec("create", "app.bsky.feed.post/3pb", post("by bob"))),
        (A, OpSpec("create", "app.bsky.actor.profile/self", PROFILE)),
        (B, OpSpec("create", "app.bsky.graph.block/3b1", {**BLOCK, "subject": A})),  # bob's: it stays
        (STRANGER, OpSpec("create", "app.bsky.feed.like/3l1", like(PA))),
        (STRANGER, OpSpec("create", "app.bsky.feed.like/3l2", like(PB))),
        (STRANGER, OpSpec("create", "app.bsky.feed.post/3r1", post("reply", parent=PA))),
        (STRANGER, OpSpec("create", "app.bsky.feed.repost/3s1", repost(PA))),
        (STRANGER, OpSpec("create", "app.bsky.feed.post/3q1", quote("look", PA, media=True))),
        (A, OpSpec("create", "app.bsky.feed.like/3l3", like(PB))),
        (B, OpSpec("create", "app.bsky.feed.like/3l4", like(PA))),
        (B, OpSpec("create", "app.bsky.feed.post/3r2", post("bob replies", parent=PA))),
        (STRANGER, OpSpec("create", "app.bsky.graph.follow/3f1", follow(A))),
        (A, OpSpec("create", "app.bsky.graph.follow/3f2", follow(B))),
        (B, OpSpec("create", "app.bsky.graph.follow/3f3", follow(A))),
        (FRIEND, OpSpec("create", "app.bsky.feed.post/3n1", post("in network"))),
        (A, OpSpec("update", "app.bsky.feed.post/3pa", post("by alice, edited"))),
        (A, OpSpec("update", "app.bsky.actor.profile/self", {**PROFILE, "description": "later"})),
        (A, OpSpec("create", "app.bsky.graph.block/3b2", {**BLOCK, "subject": STRANGER})),
        (STRANGER, OpSpec("delete", "app.bsky.feed.like/3l1")),
        (B, OpSpec("delete", "app.bsky.feed.like/3l4")),
    ]
    out = [commit(first + i, repo, op) for i, (repo, op) in enumerate(ops)]
    seq = first + len(ops)
    out += [
        event_frame("identity", seq=seq, did=A, time=TIME, handle="alice.example.com"),
        event_frame("account", seq=seq + 1, did=FRIEND, time=TIME, active=True),
        event_frame("identity", seq=seq + 2, did=B, time=TIME, handle="bob.example.com"),
    ]
    return out


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "state.sqlite"), "-q"]


def write(root: Path, replay: list[bytes], *extra: str) -> None:
    args = [
        *store(root),
        "--no-sync",
        "--replay",
        str(write_replay(root / f"r{len(list(root.glob('r*')))}.bin", replay)),
    ]
    args += ["--study-users", str(write_users(root / "study.txt", [A, B]))]
    args += ["--in-network-users", str(write_users(root / "net.txt", [FRIEND]))]
    assert write_main([*args, *extra]) == 0


def export(root: Path, *extra: str) -> None:
    assert export_main([*store(root), "--out", str(root / "out"), *extra]) == 0


def purge(root: Path, *dids: str) -> None:
    assert purge_main([*store(root), "--out", str(root / "out"), *(f"--did={d}" for d in dids)]) == 0


def rows(root: Path) -> dict[str, list[str]]:
    """Every dataset's rows as sorted JSON texts, but for the time the writer received them."""
    found: dict[str, list[str]] = {}
    for name, listed in all_rows(root / "out").items():
        if listed:
            found[name] = sorted(
                json.dumps({k: v for k, v in r.items() if k != "synctimestamp"}, default=str) for r in listed
            )
    assert stray_files(root / "out") == []  # every file a table names; none left by a purge
    return found


def at(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def involves(dataset: str, row: dict[str, Any], did: str) -> bool:
    """Read from the architecture, not from syncstream: the row is the account's, or was
    collected because of it."""
    if row.get("author_did", row.get("did")) == did:
        return True
    record = json.loads(row["record_json"]) if row.get("record_json") else {}
    pointed = {
        "study_user_activity/like_on_user_post": at(record, "subject", "uri"),
        "study_user_activity/repost_on_user_post": at(record, "subject", "uri"),
        "study_user_activity/reply_to_user_post": at(record, "reply", "parent", "uri"),
        "study_user_activity/quote_of_user_post": row.get("embed_record_uri"),
    }.get(dataset)
    if pointed is not None and pointed.startswith(f"at://{did}/"):
        return True
    # a row on a study user's post names them in subject_did, also once a delete erased the record
    on_user = dataset.endswith(("_on_user_post", "reply_to_user_post", "quote_of_user_post"))
    if on_user and row.get("subject_did") == did and row.get("operation") != "delete":
        return True
    # a follow of the account is collected because of it; a study user's own follow of it is
    # that user's activity, and stays
    follows = dataset == "scraped_user_social_network/follow"
    return follows and row.get("follow_status") == "followee" and row.get("followee_did") == did


def kind(row: dict[str, Any]) -> tuple[Any, Any]:
    return row.get("uri"), row.get("follow_status")


def without(everything: dict[str, list[str]], did: str) -> dict[str, list[str]]:
    expected = {}
    for name, listed in everything.items():
        decoded = [json.loads(r) for r in listed]
        # a delete goes with its record: the same URI and the same kind (a follow's status), so
        # that the follower row of a follow stays when its followee row goes
        gone = {kind(r) for r in decoded if involves(name, r, did) and r.get("operation") != "delete"}
        kept = [
            text
            for text, r in zip(listed, decoded, strict=True)
            if not involves(name, r, did) and (kind(r) not in gone or r.get("uri") is None)
        ]
        if kept:
            expected[name] = kept
    return expected


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    """Half the frames exported, half still in the cache."""
    root = tmp_path / "reference"
    root.mkdir()
    everything = frames()
    write(root, everything[:9])
    export(root)
    write(root, everything[9:])
    return root


@pytest.mark.parametrize("did", [A, FRIEND])
def test_purge_removes_the_account_and_what_was_collected_because_of_it(
    reference: Path, tmp_path: Path, did: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dataset by dataset: exactly the rows the account authored or caused are gone, in the
    Parquet and in the cache; every other row is there once; the purge is recorded."""
    untouched = tmp_path / "untouched"
    shutil.copytree(reference, untouched)
    export(untouched)
    everything = rows(untouched)
    assert any(involves(n, json.loads(r), did) for n, listed in everything.items() for r in listed)
    assert {"study_user_activity/profile", "study_user_activity/block"} <= set(everything)
    purge(reference, did)
    out = capsys.readouterr().out
    assert "purged " in out and f"(withdrawal) of {did}" in out
    export(reference)
    after = rows(reference)
    assert after == without(everything, did)
    assert all(len(set(listed)) == len(listed) for listed in after.values())
    with StateStore(reference / "state.sqlite") as state:
        assert did in state.population.purged()
        assert did not in state.population.current().study | state.population.current().in_network
        [record] = state.purges.records()
        assert record.dids == (did,) and record.finished_at is not None
        assert (record.rows or 0) + (record.cache_files or 0) > 0


def test_a_purged_account_is_no_longer_collected(reference: Path, caplog: pytest.LogCaptureFixture) -> None:
    """After a purge, the user file that still lists the account is skipped line by line, and
    new activity of or about the account is not written; --reenrol brings it back."""
    purge(reference, A)
    export(reference)
    more = [
        commit(100, A, OpSpec("create", "app.bsky.feed.post/3new", post("still here"))),
        commit(101, STRANGER, OpSpec("create", "app.bsky.feed.like/3l9", like(PA))),
        commit(102, B, OpSpec("create", "app.bsky.feed.post/3b2", post("bob again"))),
    ]
    with caplog.at_level(logging.WARNING):
        write(reference, more)
    assert f"study.txt:1: {A} was purged" in caplog.text
    assert tree(reference / "cache") == {
        "study_user_activity/create/post/author_did=did:plc:bob_post_uri_suffix=3b2.json"
    }
    write(
        reference,
        [commit(103, A, OpSpec("create", "app.bsky.feed.post/3back", post("back")))],
        "--reenrol",
        A,
    )
    assert "study_user_activity/create/post/author_did=did:plc:alice_post_uri_suffix=3back.json" in tree(
        reference / "cache"
    )


def test_a_deleted_account_is_purged_at_the_next_export(reference: Path, tmp_path: Path) -> None:
    """An #account event with status deleted for a study user purges it at the next export;
    --keep-deleted-accounts leaves it (and its rows) until an export without it."""
    untouched = tmp_path / "untouched"
    shutil.copytree(reference, untouched)
    export(untouched)
    everything = rows(untouched)
    write(reference, [event_frame("account", seq=200, did=A, time=TIME, active=False, status="deleted")])
    export(reference, "--keep-deleted-accounts")
    kept = rows(reference)
    assert any(json.loads(r)["status"] == "deleted" for r in kept["population/account_event"])
    export(reference)
    assert rows(reference) == without(kept, A)
    assert rows(reference) == without(everything, A)
    with StateStore(reference / "state.sqlite") as state:
        assert state.purges.pending() == {} and A in state.population.purged()
        assert [(r.dids, r.reason) for r in state.purges.records()] == [((A,), "deleted account")]


def test_other_statuses_are_recorded_not_purged(reference: Path) -> None:
    """A deactivated account is an event row, and nothing more (a taken-down one is purged:
    tests/test_withdrawal.py)."""
    write(reference, [event_frame("account", seq=200, did=B, time=TIME, active=False, status="deactivated")])
    export(reference)
    events = rows(reference)["population/account_event"]
    assert any(json.loads(r)["status"] == "deactivated" for r in events)
    with StateStore(reference / "state.sqlite") as state:
        assert state.population.purged() == frozenset() and B in state.population.current().study


def test_bad_purge_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No DID, a bad DID, or no cache: a usage error or one line and exit 2."""
    with pytest.raises(SystemExit) as no_did:
        purge_main([*store(tmp_path)])
    assert no_did.value.code == 2
    with pytest.raises(SystemExit) as bad:
        purge_main([*store(tmp_path), "--did", "alice"])
    assert bad.value.code == 2
    assert purge_main([*store(tmp_path), "--did", A]) == 2
    assert "error: no cache at" in capsys.readouterr().err


def test_a_study_users_own_follow_of_the_purged_account_stays(reference: Path) -> None:
    """B's follow of A is two rows with one URI: the followee row (collected because of A) goes,
    the follower row (B's own activity) stays, and so does its cache file."""
    purge(reference, A)
    export(reference)
    follows = [json.loads(r) for r in rows(reference)["scraped_user_social_network/follow"]]
    of_a = [(r["follow_status"], r["author_did"]) for r in follows if r["followee_did"] == A]
    assert of_a == [("follower", B)]


def test_a_purge_removes_the_accounts_set_aside_files(reference: Path) -> None:
    """Files the export set aside (they could not become rows) go with the account: one of its
    own that still decodes, one that does not but names it; another account's stays."""
    aside = reference / "cache" / ".set-aside"
    aside.mkdir()
    name = "study_user_activity~create~post~author_did={}_post_uri_suffix=3x.json"
    record = {"uri": f"at://{A}/app.bsky.feed.post/3x", "cid": None, "author_did": A, "rkey": "3x",
              "collection": "app.bsky.feed.post", "operation": "create", "record_type": "post",
              "seq": 2**70, "rev": "r", "event_time": TIME, "synctimestamp": TIME,
              "record": post("alice's words")}  # fmt: skip
    (aside / name.format(A)).write_text(json.dumps(record))
    (aside / "garbled").write_bytes(b'\xff{"author_did": "' + A.encode() + b'", "text": "alice\'s words')
    (aside / name.format(B)).write_bytes(b'\xff{"author_did": "' + B.encode() + b'"')
    purge(reference, A)
    assert sorted(p.name for p in aside.iterdir()) == [name.format(B)]


def test_an_export_whose_purge_times_out_exports_nothing(
    reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deleted account's purge that cannot finish (a writer that never applies the new
    population) stops the export before a row is written: none of the account's rows reach the
    output; the next export, once the writer is gone, purges and exports."""
    write(reference, [event_frame("account", seq=200, did=A, time=TIME, active=False, status="deleted")])
    before = rows(reference)
    capsys.readouterr()
    with WriterLock(str((reference / "cache").resolve())):
        status = export_main([*store(reference), "--out", str(reference / "out"), "--writer-timeout", "0.2"])
    assert status == 1
    assert "error: " in capsys.readouterr().err
    assert rows(reference) == before
    assert tree(reference / "cache") != set()
    export(reference)
    after = rows(reference)
    assert not any(
        A in row for listed in after.values() for row in listed if json.loads(row).get("author_did") == A
    )
    assert tree(reference / "cache") == set()
