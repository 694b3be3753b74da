"""Whole scenarios through the write command: the cache tree is the one the routing table implies."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st

from properties.strategies import hostile_text, valid_dids, valid_rkeys
from syncstream.firehose.encode import OpSpec, error_frame, info_frame
from syncstream.write.__main__ import main
from tests.helpers import (
    commit,
    follow,
    like,
    post,
    quote,
    record_cid,
    repost,
    tree,
    write_replay,
    write_users,
)
from tests.oracle import Event, expected_tree

JUNK = b"\x01junk"  # not a relay frame
NSID = {
    "post": "app.bsky.feed.post",
    "quote": "app.bsky.feed.post",
    "like": "app.bsky.feed.like",
    "repost": "app.bsky.feed.repost",
    "follow": "app.bsky.graph.follow",
    "profile": "app.bsky.actor.profile",
    "block": "app.bsky.graph.block",
}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[bytes], list[Event], list[str], list[str]]:
    people = draw(st.lists(valid_dids, min_size=3, max_size=6, unique=True))
    study = draw(st.lists(st.sampled_from(people), min_size=1, max_size=3, unique=True))
    in_network = draw(st.lists(st.sampled_from(people), max_size=3, unique=True))
    frames: list[bytes] = []
    events: list[Event] = []
    created: list[tuple[str, str, str]] = []  # (did, kind, rkey) to delete later
    seq = 100
    for _ in range(draw(st.integers(1, 25))):
        seq += draw(st.integers(1, 3))
        choice = draw(st.integers(0, 9))
        if choice == 0:
            frames.append(
                draw(st.sampled_from([info_frame("OutdatedCursor"), error_frame("FutureCursor"), JUNK]))
            )
            continue
        repo = draw(st.one_of(st.sampled_from(people), st.just("did:plc:" + "z" * 24)))
        ops: list[OpSpec] = []
        used: set[str] = set()
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(list(NSID)))
            if created and draw(st.integers(0, 3)) == 0:
                did, kind, rkey = draw(st.sampled_from(created))
                if did != repo or f"{NSID[kind]}/{rkey}" in used:
                    continue
                used.add(f"{NSID[kind]}/{rkey}")
                ops.append(OpSpec("delete", f"{NSID[kind]}/{rkey}"))
                events.append(Event(repo, NSID[kind], rkey, "delete", None))
                continue
            rkey = draw(st.one_of(valid_rkeys, valid_rkeys, st.sampled_from(["..", "."])))
            if f"{NSID[kind]}/{rkey}" in used:
                continue
            used.add(f"{NSID[kind]}/{rkey}")
            target_rkey = draw(st.one_of(valid_rkeys, st.sampled_from(["..", "a/b"])))
            target = f"at://{draw(st.sampled_from(people))}/app.bsky.feed.post/{target_rkey}"
            if kind == "post":
                record = post(parent=draw(st.one_of(st.none(), st.just(target))))
            elif kind == "quote":
                record = quote("q", target, media=draw(st.booleans()))
            elif kind == "like":
                record = like(target)
            elif kind == "repost":
                record = repost(target)
            elif kind == "profile":
                record = {"$type": "app.bsky.actor.profile", "pinnedPost": {"uri": target}}
            elif kind == "block":
                record = {**follow(draw(st.sampled_from(people))), "$type": "app.bsky.graph.block"}
            else:
                record = follow(draw(st.one_of(st.sampled_from(people), hostile_text)))
            action = draw(st.sampled_from(["create", "create", "update"]))
            ops.append(OpSpec(action, f"{NSID[kind]}/{rkey}", record))
            events.append(Event(repo, NSID[kind], rkey, action, record, record_cid(record)))
            created.append((repo, kind, rkey))
        frames.append(commit(seq, repo, *ops))
    return frames, events, study, in_network


@settings(max_examples=40)
@given(scenarios())
def test_replayed_scenario_matches_the_routing_table(
    case: tuple[list[bytes], list[Event], list[str], list[str]],
) -> None:
    """Multi-op commits, replies, reposts, quotes, profiles, blocks, deletes through the index,
    junk frames and hostile records: the writer's tree equals the oracle's, file for file."""
    frames, events, study, in_network = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        args = ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite"), "-q", "--no-sync"]
        args += ["--study-users", str(write_users(root / "study.txt", study))]
        args += ["--in-network-users", str(write_users(root / "net.txt", in_network))]
        args += ["--replay", str(write_replay(root / "replay.bin", frames)), "--flush-frames", "3"]
        # a replay none of whose frames is a relay frame is a wrong file: exit 1, as documented
        assert main(args) == (0 if any(frame != JUNK for frame in frames) else 1)
        expected = expected_tree(events, set(study), set(in_network))
        event(f"files: {min(len(expected), 10)}+")
        event(f"delete files: {min(sum('/delete/' in f for f in expected), 3)}+")
        assert tree(root / "cache") == expected
