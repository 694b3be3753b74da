"""Frame decoding against real relay frames, Jetstream's decode of them, and hostile bytes."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

import libipld
import pytest

from syncstream.firehose.decode import AccountEvent, car_blocks, decode_frame, json_model
from syncstream.firehose.encode import (
    OpSpec,
    encode_commit_frame,
    encode_frame,
    error_frame,
    event_frame,
    info_frame,
)
from tests.helpers import CORPUS, FIXTURES, TIME, corpus_frames, from_json_model, jetstream_events, post


def test_every_corpus_op_matches_production_jetstream() -> None:
    """Each #commit op decodes to Jetstream's (did, collection, rkey, operation, cid, record)."""
    expected = {}
    for event in jetstream_events():
        if event["kind"] == "commit":
            c = event["commit"]
            key = (event["did"], c["rev"], c["collection"], c["rkey"], c["operation"])
            expected[key] = (c.get("cid"), c.get("record"))
    decoded = {}
    for frame in corpus_frames():
        result = decode_frame(frame)
        assert result.problems == ()
        if result.commit is not None:
            c = result.commit
            for op in c.ops:
                decoded[(c.repo, c.rev, op.collection, op.rkey, op.action)] = (op.cid, op.record)
    assert len(decoded) == 150
    assert decoded == expected


def test_corpus_frame_kinds_match_the_manifest() -> None:
    """Frame kinds and seq range are those the capture manifest records."""
    manifest = json.loads((CORPUS / "manifest.json").read_text())
    results = [decode_frame(frame) for frame in corpus_frames()]
    kinds = Counter(r.kind for r in results)
    assert kinds == {
        "commit": manifest["commit_frames"],
        "identity": manifest["identity"],
        "account": manifest["account"],
    }
    seqs = [r.seq for r in results]
    assert seqs == list(range(manifest["seq_first"], manifest["seq_last"] + 1))


def test_blob_refs_are_links_in_the_json_model() -> None:
    """An image post's blob ref comes out as {"$link": cid}, as Jetstream writes it."""
    refs = []
    for frame in corpus_frames():
        commit = decode_frame(frame).commit
        for op in commit.ops if commit else ():
            thumb = (op.record or {}).get("embed", {}).get("external", {}).get("thumb")
            if thumb:
                refs.append(thumb["ref"])
    assert refs and all(set(ref) == {"$link"} and ref["$link"].startswith("bafkrei") for ref in refs)


def test_links_and_bytes_told_apart_as_in_the_data_model_fixtures() -> None:
    """The interop data-model fixtures decode to their JSON form: $link and $bytes distinct."""
    fixtures = json.loads(
        (FIXTURES / "atproto-interop-tests/data-model/data-model-fixtures.json").read_text()
    )
    for fixture in fixtures:
        raw = base64.b64decode(fixture["cbor_base64"] + "==")
        assert json_model(libipld.decode_dag_cbor(raw), raw) == fixture["json"]


@pytest.mark.parametrize(
    "name",
    [
        "account_lifecycle",
        "deactivation",
        "legacy",
        "post_lifecycle",
        "post_lifecycle_legacy",
        "rev_ordering",
    ],
)
def test_indigo_relay_scenarios_decode_without_problems(name: str) -> None:
    """indigo's scenario frames (#commit, #sync, #identity, #account) decode to their kinds and seqs."""
    scenario = json.loads((FIXTURES / "indigo" / f"{name}.json").read_text())
    for message in scenario["messages"]:
        frame = message["frame"]
        result = decode_frame(encode_frame(frame["header"], from_json_model(frame["body"])))
        assert result.kind == frame["header"]["t"].lstrip("#")
        assert result.seq == frame["body"]["seq"]
        assert result.problems == ()
        for op in result.commit.ops if result.commit else ():
            assert (op.record is None) == (op.action == "delete")


@pytest.mark.parametrize("path", sorted((FIXTURES / "indigo").glob("firehose_commit_*.json")))
def test_indigo_commit_bodies_find_every_record_block(path: Path) -> None:
    """Pre-Sync-1.1 commit bodies: every create's record is found in the CAR slice by its CID."""
    body = from_json_model(json.loads(path.read_text()))
    result = decode_frame(encode_frame({"op": 1, "t": "#commit"}, body))
    assert result.kind == "commit" and result.problems == ()
    blocks = car_blocks(body["blocks"])
    for wire, op in zip(body["ops"], result.commit.ops, strict=True):  # type: ignore[union-attr]
        assert op.cid == libipld.encode_cid(wire["cid"])
        assert wire["cid"] in blocks
        assert op.record is not None and op.record["$type"] == op.collection


def test_non_commit_and_error_frames_are_kinds_not_exceptions() -> None:
    """#info, error frames, unknown types and garbage are reported as kinds."""
    assert decode_frame(info_frame("OutdatedCursor", "too old")).kind == "info"
    assert decode_frame(error_frame("FutureCursor")).kind == "error"
    assert decode_frame(encode_frame({"op": 1, "t": "#labels"}, {"seq": 5})).kind == "unknown"
    assert decode_frame(b"").kind == "undecodable"
    assert decode_frame(b"\xff\x00garbage").kind == "undecodable"
    assert decode_frame(libipld.encode_dag_cbor({"op": 1})).kind == "undecodable"
    assert decode_frame(encode_frame({"op": 1, "t": "#commit"}, {"seq": 1})).kind == "malformed_commit"


def test_truncated_frame_is_undecodable() -> None:
    """A frame cut anywhere never raises: it is undecodable (or a commit missing what was cut)."""
    frame = corpus_frames()[0]
    for cut in range(0, len(frame), 97):
        assert decode_frame(frame[:cut]).kind in {"undecodable", "malformed_commit"}


def test_missing_block_passes_the_op_over() -> None:
    """An op whose record block is absent is counted as a problem; the other ops survive."""
    frame = encode_commit_frame(
        seq=9,
        repo="did:plc:a",
        rev="3k",
        time=TIME,
        ops=[OpSpec("create", "app.bsky.feed.post/3a", post())],
        omit_blocks=True,
    )
    result = decode_frame(frame)
    assert result.problems == ("missing_block",)
    assert result.commit is not None and result.commit.ops == ()


def test_collections_filter_skips_record_decoding() -> None:
    """Ops outside the wanted collections keep their path but carry no record."""
    frame = encode_commit_frame(
        seq=9,
        repo="did:plc:a",
        rev="3k",
        time=TIME,
        ops=[
            OpSpec("create", "app.bsky.feed.post/3a", post()),
            OpSpec("create", "app.bsky.feed.repost/3b", {"x": 1}),
        ],
    )
    commit = decode_frame(frame, frozenset({"app.bsky.feed.post"})).commit
    assert commit is not None
    assert [(op.collection, op.record is not None) for op in commit.ops] == [
        ("app.bsky.feed.post", True),
        ("app.bsky.feed.repost", False),
    ]


def test_repeated_blocks_do_not_hide_the_next_one() -> None:
    """Two ops with the same record share a CID (their block appears twice in this CAR); the
    third op's block, after them, is still found."""
    same = post("same")
    frame = encode_commit_frame(
        seq=9, repo="did:plc:a", rev="3k", time=TIME,
        ops=[OpSpec("create", "app.bsky.feed.post/3a", same), OpSpec("create", "app.bsky.feed.post/3b", same),
             OpSpec("create", "app.bsky.feed.post/3c", post("other"))],
    )  # fmt: skip
    result = decode_frame(frame)
    assert result.problems == ()
    assert result.commit is not None
    assert [op.record["text"] for op in result.commit.ops if op.record] == ["same", "same", "other"]


def test_account_identity_and_sync_frames_are_events() -> None:
    """#account, #identity and #sync frames decode to events with their fields; one without a
    DID is a counted problem, not an exception."""
    account = decode_frame(
        event_frame("account", seq=5, did="did:plc:a", time=TIME, active=False, status="deleted")
    )
    assert account.event == AccountEvent("account", "did:plc:a", TIME, active=False, status="deleted")
    identity = decode_frame(
        event_frame("identity", seq=6, did="did:plc:a", time=TIME, handle="a.example.com")
    )
    assert (identity.kind, identity.seq, identity.event and identity.event.handle) == (
        "identity",
        6,
        "a.example.com",
    )
    sync = decode_frame(
        event_frame("sync", seq=7, did="did:plc:a", time=TIME, rev="3mptbypluud2a", blocks=b"")
    )
    assert sync.event is not None and sync.event.rev == "3mptbypluud2a"
    broken = decode_frame(event_frame("account", seq=8, did=None, time=TIME))  # type: ignore[arg-type]
    assert (broken.kind, broken.event, broken.problems) == ("account", None, ("malformed_account",))
