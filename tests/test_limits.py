"""No poison pill: values at the spec's limits are kept and exported, and frames, ops and cache
files that cannot be are counted, set aside and passed over; the stream and the export go on."""

from __future__ import annotations

import json
from pathlib import Path

import libipld
import pytest

from syncstream.export.__main__ import main as export_main
from syncstream.firehose.encode import OpSpec, cid_for, encode_car, encode_frame
from syncstream.registry.paths import MAX_NAME_BYTES, bounded_name
from syncstream.store import StateStore
from syncstream.write.__main__ import main as write_main
from tests.helpers import (
    TIME,
    commit,
    export_args,
    export_options,
    exported,
    like,
    post,
    tree,
    write_args,
)

STUDY = "did:plc:studystudystudystudystu"
LONG_RKEY = "r" * 512  # the longest record key the spec allows
LONG_DID = "did:web:" + ".".join(["a" * 63] * 3) + "." + "b" * 61  # a did:web host of 253 characters
LONGEST_DID = "did:example:" + "x" * (2048 - len("did:example:"))  # the longest DID


def test_bounded_names_are_stable_and_fit() -> None:
    """A name over the limit gets one shortened form, within 250 bytes, keeping its suffix."""
    short = "author_did=did:plc:x_post_uri_suffix=3k.json"
    assert bounded_name(short) == short
    long = f"author_did={LONGEST_DID}_post_uri_suffix={LONG_RKEY}.json"
    name = bounded_name(long)
    assert (
        name == bounded_name(long) and name.endswith(".json") and name.startswith("author_did=did:example:")
    )
    assert len(name.encode()) <= MAX_NAME_BYTES and len(f".{name}.tmp".encode()) <= 255
    assert bounded_name(long.replace("rr.json", "rs.json")) != name
    assert bounded_name("r" * 300) != bounded_name("r" * 301)


def test_spec_limit_values_are_written_exported_and_deleted(tmp_path: Path) -> None:
    """A 512-character rkey, a 2,048-character DID and a 253-character did:web host are kept:
    written under shortened names, exported with their full values, and their deletes found."""
    liked = f"at://{LONGEST_DID}/app.bsky.feed.post/{LONG_RKEY}"
    frames = [
        commit(1, STUDY, OpSpec("create", f"app.bsky.feed.post/{LONG_RKEY}", post())),
        commit(2, LONGEST_DID, OpSpec("create", f"app.bsky.feed.post/{LONG_RKEY}", post())),
        commit(3, LONG_DID, OpSpec("create", "app.bsky.feed.post/3k", post())),
        commit(4, STUDY, OpSpec("create", "app.bsky.feed.like/3l", like(liked))),
        commit(5, LONGEST_DID, OpSpec("create", f"app.bsky.feed.like/{LONG_RKEY}", like(liked))),
        commit(6, STUDY, OpSpec("delete", f"app.bsky.feed.post/{LONG_RKEY}")),
        commit(7, LONGEST_DID, OpSpec("delete", f"app.bsky.feed.like/{LONG_RKEY}")),
    ]
    assert write_main(write_args(tmp_path, frames, [STUDY, LONGEST_DID], [LONG_DID])) == 0
    files = tree(tmp_path / "cache")
    assert len(files) == 10  # the like of a study user's post is also a like_on_user_post
    assert all(len(part.encode()) <= MAX_NAME_BYTES for path in files for part in path.split("/"))
    records = [json.loads((tmp_path / "cache" / path).read_bytes()) for path in files]
    assert {r["rkey"] for r in records} == {LONG_RKEY, "3k", "3l"}
    assert {r["author_did"] for r in records} == {STUDY, LONGEST_DID, LONG_DID}

    assert export_main(export_args(tmp_path)) == 0
    rows = exported(tmp_path)
    assert len(rows) == 10 and tree(tmp_path / "cache") == set()
    assert ("post", f"at://{STUDY}/app.bsky.feed.post/{LONG_RKEY}", "delete", STUDY, LONG_RKEY) in rows
    assert ("post", f"at://{LONG_DID}/app.bsky.feed.post/3k", "create", LONG_DID, "3k") in rows
    like_uri = f"at://{LONGEST_DID}/app.bsky.feed.like/{LONG_RKEY}"
    assert ("like", like_uri, "delete", LONGEST_DID, LONG_RKEY) in rows
    assert ("like_on_user_post", like_uri, "create", LONGEST_DID, LONG_RKEY) in rows


def _raw_commit(
    seq: int, repo: str, ops: list[object], blocks: list[tuple[bytes, bytes]], time: str = TIME
) -> bytes:
    root = cid_for(libipld.encode_dag_cbor({"did": repo}))
    body = {
        "seq": seq,
        "repo": repo,
        "rev": "3l",
        "time": time,
        "ops": ops,
        "blocks": encode_car([root], blocks),
    }
    return encode_frame({"op": 1, "t": "#commit"}, body)


def test_poison_frames_are_counted_and_passed_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An op that is not a map, a CID of an unknown version, a record nested past the stack, a
    commit time that is no datetime and a seq beyond int64: each is counted, and the frames
    around them are written; the cursor reaches the last frame."""
    record = libipld.encode_dag_cbor(post())
    good_cid = cid_for(record)
    bad_cid = b"\x05" + good_cid[1:]  # CID version 5
    deep = b"\xa2\x61x" + b"\x81" * 900 + b"\x00" + b"\x65$type\x72app.bsky.feed.post"
    frames = [
        commit(1, STUDY, OpSpec("create", "app.bsky.feed.post/ok1", post())),
        _raw_commit(2, STUDY, ["not a map", 7], []),
        _raw_commit(
            3,
            STUDY,
            [{"action": "create", "path": "app.bsky.feed.post/b", "cid": bad_cid}],
            [(bad_cid, record)],
        ),
        _raw_commit(
            4,
            STUDY,
            [{"action": "create", "path": "app.bsky.feed.post/d", "cid": cid_for(deep)}],
            [(cid_for(deep), deep)],
        ),
        _raw_commit(
            5,
            STUDY,
            [{"action": "create", "path": "app.bsky.feed.post/t", "cid": good_cid}],
            [(good_cid, record)],
            time="2026-11-28T12:00:07.\u00b2Z",
        ),
        _raw_commit(
            2**63,
            STUDY,
            [{"action": "create", "path": "app.bsky.feed.post/s", "cid": good_cid}],
            [(good_cid, record)],
        ),
        commit(6, STUDY, OpSpec("create", "app.bsky.feed.post/ok2", post())),
    ]
    assert write_main(write_args(tmp_path, frames, [STUDY])) == 0
    out = capsys.readouterr().out
    for line in ("malformed_op: 2", "invalid_cid: 1", "undecodable_record: 1", "invalid_event_time: 1"):
        assert line in out
    assert "malformed_commit: 1" in out  # the seq beyond int64
    assert {path.rsplit("=", 1)[1] for path in tree(tmp_path / "cache")} == {"ok1.json", "ok2.json"}
    with StateStore(tmp_path / "s.sqlite") as state:
        assert state.cursors.get() == 6
    assert export_main(export_args(tmp_path)) == 0
    assert len(exported(tmp_path)) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_time", "2026-11-28T12:00:07.\u00b2Z"),
        ("synctimestamp", "yesterday"),
        ("seq", 2**64),
        ("seq", -1),
    ],
)
def test_a_cache_file_that_cannot_be_a_row_is_set_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: object
) -> None:
    """A cache file whose time or seq the export cannot store (an older writer's, a hand edit)
    is moved to .set-aside/ and counted; every other row is exported and the cache drains."""
    frames = [commit(i, STUDY, OpSpec("create", f"app.bsky.feed.post/p{i}", post())) for i in range(1, 4)]
    assert write_main(write_args(tmp_path, frames, [STUDY])) == 0
    path = next((tmp_path / "cache" / "study_user_activity/create/post").iterdir())
    record = json.loads(path.read_bytes())
    record[field] = value
    path.write_text(json.dumps(record))
    assert export_main(export_args(tmp_path)) == 0
    assert "files set aside (not exportable, in .set-aside/): 1" in capsys.readouterr().out
    assert len(exported(tmp_path)) == 2
    assert {p for p in tree(tmp_path / "cache") if not p.startswith(".set-aside/")} == set()
    assert [p.name for p in (tmp_path / "cache" / ".set-aside").iterdir()] == [
        f"study_user_activity~create~post~{path.name}"
    ]
    assert export_main(export_args(tmp_path)) == 0  # nothing stalls: the next export is empty
    assert len(exported(tmp_path)) == 2


def test_large_records_are_chunked_by_bytes(tmp_path: Path) -> None:
    """Chunks are bounded by --batch-bytes as well as --batch-files: 12 records of 100 KB with a
    budget of 250 KB make 4 or more chunks, and every row is exported once."""
    from syncstream.export.batch import export_batch
    from syncstream.export.context import setup_batch_export_system

    frames = [
        commit(i, STUDY, OpSpec("create", f"app.bsky.feed.post/p{i}", post("x" * 100_000)))
        for i in range(1, 13)
    ]
    assert write_main(write_args(tmp_path, frames, [STUDY])) == 0
    with setup_batch_export_system(export_options(tmp_path, batch_bytes=250_000)) as context:
        summary = export_batch(context)
    assert summary.rows == 12 and summary.batches == 4
    assert len(exported(tmp_path)) == 12
