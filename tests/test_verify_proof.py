"""Sync 1.1 checked end to end on real frames: the corpus' 148 commits prove (every block
hashed, every op at its path in the signed tree, the ops inverted giving prevData), and frames
altered as an adversarial relay would (the signed commit block untouched, or re-signed as it
was) are each refused, counted by the check that failed, never written, never a crash."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import libipld
import pytest
import zstandard

from syncstream.firehose.decode import decode_frame
from syncstream.firehose.proof import prove
from syncstream.servers.pds import LoopbackPds
from syncstream.verify import DidDocuments
from syncstream.write.authentic import StreamVerifier
from syncstream.write.context import CacheWriteContext, setup_cache_write_system
from syncstream.write.writer import CacheWriter
from tests.forgery import body_of, car_of, frame_of, post_op, record_block, tid
from tests.helpers import CORPUS, corpus_frames, tree, write_users


def documents() -> dict[str, dict[str, object]]:
    data = zstandard.ZstdDecompressor().stream_reader((CORPUS / "did_docs.json.zst").read_bytes()).read()
    loaded: dict[str, dict[str, object]] = json.loads(data)
    return loaded


def commits() -> list[bytes]:
    return [f for f in corpus_frames() if b"#commit" in f[:20]]


def test_the_corpus_commits_prove_and_invert_to_prev_data() -> None:
    """All 148 real Sync 1.1 commits: every block hashes to its CID, each op holds in the signed
    tree, and the ops inverted give the frame's prevData."""
    proved = [prove(d, d.commit.repo, d.commit.rev) for d in map(decode_frame, commits()) if d.commit]
    assert len(proved) == 148
    assert all(p.inverted for p in proved)


Change = Callable[[dict[str, Any], list[tuple[bytes, bytes]], int], bytes]


def with_post(change: Change) -> tuple[int, bytes]:
    """The first corpus commit creating a post (its index among the commits), altered by
    ``change(body, blocks, op index)``."""
    for at, frame in enumerate(commits()):
        _, body = body_of(frame)
        if any(
            op["action"] == "create" and op["path"].startswith("app.bsky.feed.post/") for op in body["ops"]
        ):
            return at, change(body, car_of(body)[1], post_op(body))
    raise LookupError("no post in the corpus")


def record_replaced(body: dict[str, Any], blocks: list[tuple[bytes, bytes]], index: int) -> bytes:
    """The post's record block replaced by other bytes under the same CID."""
    cid = body["ops"][index]["cid"]
    forged = [(c, record_block("not what was signed")[1] if c == cid else data) for c, data in blocks]
    return frame_of({"op": 1, "t": "#commit"}, body, body["commit"], forged)


def extra_create(body: dict[str, Any], blocks: list[tuple[bytes, bytes]], index: int) -> bytes:
    """An extra create op for a well-formed block the signed MST does not hold."""
    cid, block = record_block("an invented post")
    op = {"action": "create", "path": "app.bsky.feed.post/3mptzzzzzzz2a", "cid": cid, "prev": None}
    return frame_of({"op": 1, "t": "#commit"}, {**body, "ops": [*body["ops"], op]}, body["commit"],
                    [*blocks, (cid, block)])  # fmt: skip


def repointed(body: dict[str, Any], blocks: list[tuple[bytes, bytes]], index: int) -> bytes:
    """The post op re-pointed at a new, well-formed block of other content."""
    cid, block = record_block("other content")
    ops = [dict(op, cid=cid) if i == index else op for i, op in enumerate(body["ops"])]
    return frame_of({"op": 1, "t": "#commit"}, {**body, "ops": ops}, body["commit"], [*blocks, (cid, block)])


def dropped(body: dict[str, Any], blocks: list[tuple[bytes, bytes]], index: int) -> bytes:
    """The frame without the post op (the rest of the commit as it was)."""
    ops = [op for i, op in enumerate(body["ops"]) if i != index]
    return frame_of({"op": 1, "t": "#commit"}, {**body, "ops": ops}, body["commit"], blocks)


def old_commit(body: dict[str, Any], blocks: list[tuple[bytes, bytes]], index: int) -> bytes:
    """The signed commit under a new frame: a later rev, an invented op."""
    cid, block = record_block("an invented post")
    op = {"action": "create", "path": "app.bsky.feed.post/3mptzzzzzzz2a", "cid": cid, "prev": None}
    return frame_of({"op": 1, "t": "#commit"}, {**body, "rev": tid(1_783_176_000), "ops": [op]},
                    body["commit"], [*blocks, (cid, block)])  # fmt: skip


def misshapen(body: dict[str, Any], blocks: list[tuple[bytes, bytes]], index: int) -> bytes:
    """A create that names a prev."""
    ops = [dict(op, prev=op["cid"]) if i == index else op for i, op in enumerate(body["ops"])]
    return frame_of({"op": 1, "t": "#commit"}, {**body, "ops": ops}, body["commit"], blocks)


def node_missing(body: dict[str, Any], blocks: list[tuple[bytes, bytes]], index: int) -> bytes:
    """The CAR slice without the MST's root node."""
    data = libipld.decode_dag_cbor(dict(blocks)[body["commit"]])["data"]
    return frame_of({"op": 1, "t": "#commit"}, body, body["commit"], [(c, b) for c, b in blocks if c != data])


def other_hash(body: dict[str, Any], blocks: list[tuple[bytes, bytes]], index: int) -> bytes:
    """An extra block under a CID of another multihash (identity)."""
    return frame_of(
        {"op": 1, "t": "#commit"}, body, body["commit"], [*blocks, (b"\x01\x71\x00\x03abc", b"abc")]
    )


FORGERIES = {
    "record_replaced": (record_replaced, "bad_block_hash"),
    "extra_create": (extra_create, "op_not_in_tree"),
    "repointed": (repointed, "op_not_in_tree"),
    "dropped_op": (dropped, "prev_data_mismatch"),
    "old_commit_new_frame": (old_commit, "commit_mismatch"),
    "create_with_prev": (misshapen, "bad_op"),
    "node_missing": (node_missing, "incomplete_proof"),
    "other_multihash": (other_hash, "bad_block_hash"),
}


@contextmanager
def verified_writer(root: Path) -> Iterator[tuple[CacheWriter, StreamVerifier, CacheWriteContext]]:
    """A writer verifying every corpus author (study users) against their real documents."""
    docs = documents()
    root.mkdir()
    study = write_users(root / "s.txt", sorted(docs))
    with (
        setup_cache_write_system(root / "cache", root / "s.sqlite", study_users=study) as context,
        LoopbackPds({}, documents=docs) as plc,
    ):
        verifier = StreamVerifier(DidDocuments(plc.url), "study")
        yield CacheWriter(context, durable=False, verifier=verifier), verifier, context


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_forged_frame_is_refused(tmp_path: Path, name: str) -> None:
    """Each forgery, in the real stream, is refused and counted by the check it fails; the other
    147 commits verify; the cache holds exactly what it holds without the forged frame."""
    change, outcome = FORGERIES[name]
    at, forged = with_post(change)
    frames = list(commits())
    with verified_writer(tmp_path / "without") as (writer, verifier, _):
        writer.process_frames(frames[:at] + frames[at + 1 :])
    frames[at] = forged
    with verified_writer(tmp_path / "forged") as (writer, verifier, _):
        writer.process_frames(frames)
    assert verifier.counts == {"verified": 147, outcome: 1}
    assert writer.rejections["unverified_commit"] == 1
    assert tree(tmp_path / "forged" / "cache") == tree(tmp_path / "without" / "cache")
