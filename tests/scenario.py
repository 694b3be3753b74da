"""The export scenario: a replay by a study user, a stranger and an in-network friend that
touches every dataset (creates, updates, deletes, account events), the rows it must export,
and the arguments that write and export it (its store is ``state.sqlite`` under the test's
directory). Shared by the export, table, registry and S3 tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syncstream.firehose.encode import OpSpec, event_frame
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
    write_replay,
    write_users,
)

STUDY, STRANGER, FRIEND = "did:plc:study", "did:plc:stranger", "did:plc:friend"
P1 = f"at://{STUDY}/app.bsky.feed.post/3p1"
R1 = f"at://{STRANGER}/app.bsky.feed.post/3r1"
PROFILE_URI = f"at://{STUDY}/app.bsky.actor.profile/self"
B1 = f"at://{STUDY}/app.bsky.graph.block/3b1"
PROFILE = from_json_model(golden_record("app.bsky.actor.profile"))  # a real one: avatar, pinned post
BLOCK = golden_record("app.bsky.graph.block")
BLOCKED_PIN = "at://did:plc:o6t5vwyr7ae73foww7bgye4r/app.bsky.feed.post/3meuab5it2s2g"


def rich_post() -> dict[str, Any]:
    record = post("hello #world")
    record |= {
        "langs": ["en", "de"],
        "tags": ["science"],
        "labels": {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nudity"}]},
        "facets": [
            {
                "index": {"byteStart": 6, "byteEnd": 12},
                "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "world"}],
            }
        ],
        "embed": {
            "$type": "app.bsky.embed.external",
            "external": {"uri": "https://x", "title": "", "description": ""},
        },
    }
    return record


def scenario() -> list[bytes]:
    return [
        commit(10, STUDY, OpSpec("create", "app.bsky.feed.post/3p1", rich_post())),
        commit(11, STRANGER, OpSpec("create", "app.bsky.feed.post/3r1", post("reply", parent=P1))),
        commit(12, STRANGER, OpSpec("create", "app.bsky.feed.like/3l1", like(P1))),
        commit(
            13,
            STUDY,
            OpSpec("create", "app.bsky.feed.like/3l2", like(f"at://{STRANGER}/app.bsky.feed.post/3r1")),
        ),
        commit(14, STUDY, OpSpec("create", "app.bsky.graph.follow/3f1", follow(STRANGER))),
        commit(15, STRANGER, OpSpec("create", "app.bsky.graph.follow/3f2", follow(STUDY))),
        commit(16, FRIEND, OpSpec("create", "app.bsky.feed.post/3n1", post("in network"))),
        commit(17, STUDY, OpSpec("create", "app.bsky.feed.repost/3s1", repost(R1))),
        commit(18, STRANGER, OpSpec("create", "app.bsky.feed.repost/3s2", repost(P1))),
        commit(19, STRANGER, OpSpec("create", "app.bsky.feed.post/3q1", quote("look", P1, media=True))),
        commit(
            20,
            STRANGER,
            OpSpec("delete", "app.bsky.feed.post/3r1"),
            OpSpec("delete", "app.bsky.feed.like/3l1"),
            OpSpec("delete", "app.bsky.graph.follow/3f2"),
            OpSpec("delete", "app.bsky.feed.repost/3s2"),
            OpSpec("delete", "app.bsky.feed.post/3q1"),
        ),
        commit(
            21,
            STUDY,
            OpSpec("delete", "app.bsky.feed.post/3p1"),
            OpSpec("delete", "app.bsky.feed.like/3l2"),
            OpSpec("delete", "app.bsky.graph.follow/3f1"),
            OpSpec("delete", "app.bsky.feed.repost/3s1"),
        ),
        commit(22, FRIEND, OpSpec("delete", "app.bsky.feed.post/3n1")),
        event_frame("identity", seq=23, did=STUDY, time=TIME, handle="study.example.com"),
        event_frame("account", seq=24, did=FRIEND, time=TIME, active=False, status="deactivated"),
        event_frame("sync", seq=25, did=STUDY, time=TIME, rev="3mptbypluud2b", blocks=b""),
        event_frame("account", seq=26, did=STRANGER, time=TIME, active=False, status="takendown"),
        commit(27, STUDY, OpSpec("create", "app.bsky.actor.profile/self", PROFILE)),
        commit(28, STUDY, OpSpec("update", "app.bsky.actor.profile/self", {**PROFILE, "displayName": "new"})),
        commit(29, STUDY, OpSpec("create", "app.bsky.graph.block/3b1", {**BLOCK, "subject": STRANGER})),
        commit(
            30,
            STRANGER,  # a stranger's profile and block (of a study user) are not collected
            OpSpec("update", "app.bsky.actor.profile/self", PROFILE),
            OpSpec("create", "app.bsky.graph.block/3b2", {**BLOCK, "subject": STUDY}),
        ),
        commit(31, STRANGER, OpSpec("delete", "app.bsky.graph.block/3b2")),
        commit(32, STUDY, OpSpec("delete", "app.bsky.graph.block/3b1")),
    ]


EXPECTED: dict[str, set[tuple[str, str, str | None]]] = {
    "study_user_activity/post": {(P1, "create", None), (P1, "delete", None)},
    "study_user_activity/reply_to_user_post": {
        (f"at://{STRANGER}/app.bsky.feed.post/3r1", "create", None),
        (f"at://{STRANGER}/app.bsky.feed.post/3r1", "delete", None),
    },
    "study_user_activity/like_on_user_post": {
        (f"at://{STRANGER}/app.bsky.feed.like/3l1", "create", None),
        (f"at://{STRANGER}/app.bsky.feed.like/3l1", "delete", None),
    },
    "study_user_activity/like": {
        (f"at://{STUDY}/app.bsky.feed.like/3l2", "create", None),
        (f"at://{STUDY}/app.bsky.feed.like/3l2", "delete", None),
    },
    "scraped_user_social_network/follow": {
        (f"at://{STUDY}/app.bsky.graph.follow/3f1", "create", "follower"),
        (f"at://{STUDY}/app.bsky.graph.follow/3f1", "delete", "follower"),
        (f"at://{STRANGER}/app.bsky.graph.follow/3f2", "create", "followee"),
        (f"at://{STRANGER}/app.bsky.graph.follow/3f2", "delete", "followee"),
    },
    "in_network_user_activity/post": {
        (f"at://{FRIEND}/app.bsky.feed.post/3n1", "create", None),
        (f"at://{FRIEND}/app.bsky.feed.post/3n1", "delete", None),
    },
    "study_user_activity/repost": {
        (f"at://{STUDY}/app.bsky.feed.repost/3s1", "create", None),
        (f"at://{STUDY}/app.bsky.feed.repost/3s1", "delete", None),
    },
    "study_user_activity/repost_on_user_post": {
        (f"at://{STRANGER}/app.bsky.feed.repost/3s2", "create", None),
        (f"at://{STRANGER}/app.bsky.feed.repost/3s2", "delete", None),
    },
    "study_user_activity/quote_of_user_post": {
        (f"at://{STRANGER}/app.bsky.feed.post/3q1", "create", None),
        (f"at://{STRANGER}/app.bsky.feed.post/3q1", "delete", None),
    },
    "population/account_event": {
        (f"at://{STUDY}/#identity/23", "create", None),
        (f"at://{FRIEND}/#account/24", "create", None),
        (f"at://{STUDY}/#sync/25", "create", None),
    },
    "study_user_activity/profile": {(PROFILE_URI, "create", None), (PROFILE_URI, "update", None)},
    "study_user_activity/block": {(B1, "create", None), (B1, "delete", None)},
}


ROWS = sum(map(len, EXPECTED.values()))  # one cache file each


def write_cache(tmp_path: Path, frames: list[bytes] | None = None) -> list[str]:
    args = [
        "--cache-dir",
        str(tmp_path / "cache"),
        "--state",
        str(tmp_path / "state.sqlite"),
        "-q",
        "--no-sync",
    ]
    args += ["--study-users", str(write_users(tmp_path / "study.txt", [STUDY]))]
    args += ["--in-network-users", str(write_users(tmp_path / "net.txt", [FRIEND]))]
    args += ["--replay", str(write_replay(tmp_path / "replay.bin", frames or scenario()))]
    assert write_main(args) == 0
    return args


def export_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--cache-dir",
        str(tmp_path / "cache"),
        "--state",
        str(tmp_path / "state.sqlite"),
        "--out",
        str(tmp_path / "out"),
        "-q",
        *extra,
    ]


def keys(rows: list[dict[str, Any]]) -> set[tuple[str, str, str | None]]:
    """(uri, operation, follow_status) of record rows; an account event's as its cache file has it."""
    return {
        (r["uri"], r["operation"], r.get("follow_status"))
        if "uri" in r
        else (f"at://{r['did']}/#{r['event']}/{r['seq']}", "create", None)
        for r in rows
    }
