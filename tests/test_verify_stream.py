"""The verified stream (--verify): the 148 real commits of the corpus verify against their
authors' real DID documents served by a loopback PLC; a commit re-signed with a flipped bit is
refused; a directory that is down leaves commits written unverified; a stale rev is dropped; a
``since`` that skips a rev asks for a fresh backfill; an ``#identity`` drops the cached key."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import libipld
import zstandard

from syncstream.export.__main__ import main as export_main
from syncstream.firehose.encode import OpSpec, encode_commit_frame, event_frame
from syncstream.servers.keys import REHEARSAL_SEED, SigningKey, sign_commit
from syncstream.servers.pds import LoopbackPds
from syncstream.verify import DidDocuments
from syncstream.write.__main__ import main as write_main
from syncstream.write.authentic import StreamVerifier
from syncstream.write.context import setup_cache_write_system
from syncstream.write.writer import CacheWriter
from tests.forgery import badly_signed, body_of, car_of, tid
from tests.helpers import CORPUS, TIME, corpus_frames, post, tree, write_replay, write_users
from tests.tables import dataset_names, table_rows

KEY = SigningKey(REHEARSAL_SEED)
DID = "did:plc:studystudystudystudystu"


def documents() -> dict[str, dict[str, object]]:
    data = zstandard.ZstdDecompressor().stream_reader((CORPUS / "did_docs.json.zst").read_bytes()).read()
    loaded: dict[str, dict[str, object]] = json.loads(data)
    return loaded


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite"), "-q"]


def all_rows(out: Path) -> list[dict[str, Any]]:
    """The rows of every record dataset (the Delta tables, read back)."""
    found: list[dict[str, Any]] = []
    for name in dataset_names(out):
        if "account_event" not in name:
            found += table_rows(out, name)
    return found


def test_the_corpus_verifies_and_a_flipped_signature_bit_is_refused(tmp_path: Path) -> None:
    """Every author of the corpus a study user, --verify study, the PLC directory a loopback one
    serving their real documents: 147 commits verified and written with verified true, the one
    whose signature has a flipped bit (its block and CID made anew) not written."""
    docs = documents()
    frames = list(corpus_frames())
    commits = [i for i, f in enumerate(frames) if b"#commit" in f[:20]]
    victim = commits[5]
    frames[victim] = badly_signed(frames[victim])
    _, body = libipld.decode_dag_cbor_multi(frames[victim])
    replay = write_replay(tmp_path / "r.bin", frames)
    study = write_users(tmp_path / "study.txt", sorted(docs))
    with LoopbackPds({}, documents=docs) as plc:
        args = [*store(tmp_path), "--no-sync", "--replay", str(replay), "--study-users", str(study),
                "--verify", "study", "--plc-url", plc.url]  # fmt: skip
        assert write_main(args) == 0
    assert tree(tmp_path / "cache")
    assert export_main([*store(tmp_path), "--out", str(tmp_path / "out")]) == 0
    rows = all_rows(tmp_path / "out")
    assert rows and {r["verified"] for r in rows} == {True}
    assert body["repo"] not in {r["author_did"] for r in rows if r["rev"] == body["rev"]}


def test_the_library_counts_each_outcome(tmp_path: Path) -> None:
    """148 commits: 147 verified, 1 bad_signature; keys cached, one lookup per author and a
    refresh for the one that failed."""
    docs = documents()
    frames = list(corpus_frames())
    victim = next(i for i, f in enumerate(frames) if b"#commit" in f[:20])
    frames[victim] = badly_signed(frames[victim])
    with setup_cache_write_system(tmp_path / "cache", tmp_path / "s.sqlite",
                                  study_users=write_users(tmp_path / "s.txt", sorted(docs))) as context:  # fmt: skip
        with LoopbackPds({}, documents=docs) as plc:
            verifier = StreamVerifier(DidDocuments(plc.url), "study")
            writer = CacheWriter(context, durable=False, verifier=verifier)
            writer.process_frames(frames)
        assert verifier.counts == {"verified": 147, "bad_signature": 1}
        assert writer.rejections.get("unverified_commit") == 1
        assert verifier.documents.lookups == len(docs) + 1  # the failed one is fetched again once


def test_a_directory_that_is_down_leaves_commits_written_unverified(tmp_path: Path) -> None:
    """No PLC directory: every commit is written, verified null, and counted key_unavailable."""
    with LoopbackPds({}) as gone:
        url = gone.url
    docs = documents()
    replay = write_replay(tmp_path / "r.bin", corpus_frames())
    study = write_users(tmp_path / "study.txt", sorted(docs))
    args = [*store(tmp_path), "--no-sync", "--replay", str(replay), "--study-users", str(study),
            "--verify", "study", "--plc-url", url]  # fmt: skip
    assert write_main(args) == 0
    assert export_main([*store(tmp_path), "--out", str(tmp_path / "out")]) == 0
    rows = all_rows(tmp_path / "out")
    assert rows and {r["verified"] for r in rows} == {None}


def rev(n: int) -> str:
    return tid(1_783_175_887 + n)


def signed(
    seq: int, n: int, rkey: str, since: int | None = None, repo: dict[str, bytes] | None = None
) -> bytes:
    """A signed commit at rev ``n`` creating a post; ``repo``: the records before (updated)."""
    return encode_commit_frame(seq=seq, repo=DID, rev=rev(n), time=TIME, since=None if since is None else rev(since),
                               ops=[OpSpec("create", f"app.bsky.feed.post/{rkey}", post(rkey))],
                               sign=partial(sign_commit, key=KEY), before=repo)  # fmt: skip


def test_stale_revs_are_dropped_and_a_skipped_rev_asks_for_a_backfill(tmp_path: Path) -> None:
    """A rev not newer than the last written is counted and not written; a since that is not the
    last rev seen marks the study user desynchronized (a row of its own) and for a fresh
    backfill; #identity drops its cached key."""
    repo: dict[str, bytes] = {}
    first = signed(1, 2, "a", repo=repo)
    frames = [
        first,
        signed(2, 1, "stale", repo=dict(repo)),
        signed(3, 2, "again", repo=dict(repo)),
        signed(4, 3, "b", since=2, repo=repo),
        event_frame("identity", seq=5, did=DID, time=TIME, handle="new.test"),
        signed(6, 5, "c", since=4, repo=repo),
    ]
    with setup_cache_write_system(tmp_path / "cache", tmp_path / "s.sqlite",
                                  study_users=write_users(tmp_path / "s.txt", [DID])) as context:  # fmt: skip
        with LoopbackPds({DID: b""}, key=KEY) as plc:
            verifier = StreamVerifier(DidDocuments(plc.url), "study")
            writer = CacheWriter(context, durable=False, verifier=verifier)
            writer.process_frames(frames)
        assert verifier.counts == {"verified": 3, "stale_rev": 2, "desynchronized": 1}
        assert verifier.documents.lookups == 2  # once, and again after the #identity
        names = {name.rsplit("=", 1)[1] for name in tree(tmp_path / "cache") if "/post/" in name}
        assert names == {"a.json", "b.json", "c.json"}
        assert context.state.backfills.recorded()[DID][0] == "pending"
        assert [n for n in tree(tmp_path / "cache") if "/desync/" in n] == [
            f"population/account_event/desync/did={DID}_seq=6.json"]  # fmt: skip
        assert context.state.chains.get(DID) == (rev(5), libipld.decode_dag_cbor(
            dict(car_of(body_of(frames[-1])[1])[1])[body_of(frames[-1])[1]["commit"]])["data"])  # fmt: skip


def test_a_replay_is_not_verified_unless_asked(tmp_path: Path) -> None:
    """--replay defaults to --verify none: rows say verified null, no directory is asked."""
    replay = write_replay(tmp_path / "r.bin", [signed(1, 2, "a")])
    study = write_users(tmp_path / "study.txt", [DID])
    args = [*store(tmp_path), "--no-sync", "--replay", str(replay), "--study-users", str(study),
            "--plc-url", "http://127.0.0.1:9"]  # fmt: skip
    assert write_main(args) == 0
    assert export_main([*store(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert [r["verified"] for r in all_rows(tmp_path / "out")] == [None]


def test_the_check_agrees_with_the_sdks_verify_signature() -> None:
    """Over the corpus's real commits, a flipped byte and a high-S twin of each signature,
    verify_commit (keys parsed once) says what atproto_crypto.verify.verify_signature says."""
    from atproto_core.did_doc import DidDocument
    from atproto_crypto.consts import SECP256K1_CURVE_ORDER
    from atproto_crypto.verify import verify_signature

    from syncstream.firehose.decode import decode_frame, signed_commit
    from syncstream.verify import verify_commit

    docs = documents()
    checked = 0
    with LoopbackPds({}, documents=docs) as plc:
        directory = DidDocuments(plc.url)
        for frame in corpus_frames():
            decoded = decode_frame(frame)
            commit = signed_commit(decoded)
            if not isinstance(commit, dict) or decoded.commit is None:
                continue
            did = decoded.commit.repo
            did_key = DidDocument.from_dict(docs[did]).get_did_key()
            signature = commit["sig"]
            s = int.from_bytes(signature[32:], "big")
            for variant in (
                signature,
                signature[:5] + bytes([signature[5] ^ 1]) + signature[6:],
                signature[:32] + (SECP256K1_CURVE_ORDER - s).to_bytes(32, "big"),
            ):
                unsigned = {k: v for k, v in commit.items() if k != "sig"}
                expected = verify_signature(did_key, libipld.encode_dag_cbor(unsigned), variant)
                assert verify_commit(directory, did, {**commit, "sig": variant}).verified is expected
            checked += 1
    assert checked == 148
