"""Routing: each row of the architecture's table, independence of conditions, hostile records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syncstream.firehose.decode import Commit, RepoOp
from syncstream.firehose.encode import OpSpec
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.population import Population
from syncstream.registry.types import HandlerKey as K
from syncstream.write.__main__ import main
from syncstream.write.route import CacheWrite, Rejection, route_commit, route_op, routing_table
from tests.helpers import TIME, commit, follow, like, post, quote, repost, tree, write_replay, write_users

STUDY, OTHER_STUDY, FRIEND, STRANGER = "did:plc:study", "did:plc:study2", "did:plc:friend", "did:plc:stranger"
POPULATION = Population(study=frozenset({STUDY, OTHER_STUDY}), in_network=frozenset({FRIEND}))
CID = "bafyreiftot7eltsc3f6g4qktykmbv6jcmdmhcx5osscan6jpdxkpqcmcza"
TABLE = routing_table(HANDLERS)


def study_post(rkey: str = "3parent", author: str = STUDY) -> str:
    return f"at://{author}/app.bsky.feed.post/{rkey}"


def route(
    repo: str, action: str, path: str, record: dict[str, Any] | None = None, prior: frozenset[K] = frozenset()
) -> list[CacheWrite] | Rejection:
    collection, rkey = path.split("/")
    op = RepoOp(action, collection, rkey, None if action == "delete" else CID, record)
    return route_op(
        TABLE,
        Commit(7, repo, "3rev", TIME, (op,)),
        op,
        POPULATION,
        prior,
        synctimestamp="2026-07-04T14:38:08.000000Z",
    )


def keys(routed: list[CacheWrite] | Rejection) -> list[tuple[str, str | None]]:
    assert not isinstance(routed, Rejection), routed
    return [(w.key, w.record.nested_key) for w in routed]


def test_study_user_post() -> None:
    """A study user's post is a `post`."""
    assert keys(route(STUDY, "create", "app.bsky.feed.post/3a", post())) == [(K.POST, None)]


def test_reply_to_a_study_users_post_by_anyone() -> None:
    """A reply whose parent is a study user's post is nested by the parent's rkey."""
    assert keys(route(STRANGER, "create", "app.bsky.feed.post/3a", post(parent=study_post()))) == [
        (K.REPLY_TO_USER_POST, "3parent")
    ]


def test_reply_to_a_non_post_parent_is_not_a_reply_to_user_post() -> None:
    """The parent must be an app.bsky.feed.post of a study user."""
    parent = f"at://{STUDY}/app.bsky.feed.generator/3parent"
    assert keys(route(STRANGER, "create", "app.bsky.feed.post/3a", post(parent=parent))) == []


def test_in_network_post_nested_by_author() -> None:
    """An in-network user's post is nested by its author's DID."""
    assert keys(route(FRIEND, "create", "app.bsky.feed.post/3a", post())) == [(K.IN_NETWORK_POST, FRIEND)]


def test_conditions_are_independent() -> None:
    """One study user replying to another yields both `post` and `reply_to_user_post`."""
    routed = route(STUDY, "create", "app.bsky.feed.post/3a", post(parent=study_post(author=OTHER_STUDY)))
    assert keys(routed) == [(K.POST, None), (K.REPLY_TO_USER_POST, "3parent")]


def test_study_user_like_nested_by_liked_rkey() -> None:
    """A study user's like is nested by the liked record's rkey, whatever its collection."""
    liked = f"at://{STRANGER}/app.bsky.feed.generator/3feed"
    assert keys(route(STUDY, "create", "app.bsky.feed.like/3l", like(liked))) == [(K.LIKE, "3feed")]


def test_like_on_a_study_users_post_even_an_old_one() -> None:
    """A like of any post whose authority is a study user is caught, with no memory of the post."""
    assert keys(route(STRANGER, "create", "app.bsky.feed.like/3l", like(study_post("3old")))) == [
        (K.LIKE_ON_USER_POST, "3old")
    ]


def test_study_user_liking_a_study_users_post() -> None:
    """Both like conditions hold at once."""
    assert keys(route(STUDY, "create", "app.bsky.feed.like/3l", like(study_post("3p", OTHER_STUDY)))) == [
        (K.LIKE, "3p"),
        (K.LIKE_ON_USER_POST, "3p"),
    ]


def test_follows_both_ways() -> None:
    """A study user's follow is a `follower` row; a follow of a study user a `followee` row."""
    assert keys(route(STUDY, "create", "app.bsky.graph.follow/3f", follow(STRANGER))) == [
        (K.FOLLOW_FOLLOWER, None)
    ]
    assert keys(route(STRANGER, "create", "app.bsky.graph.follow/3f", follow(STUDY))) == [
        (K.FOLLOW_FOLLOWEE, None)
    ]
    both = route(STUDY, "create", "app.bsky.graph.follow/3f", follow(OTHER_STUDY))
    assert keys(both) == [(K.FOLLOW_FOLLOWER, None), (K.FOLLOW_FOLLOWEE, None)]
    assert not isinstance(both, Rejection)
    assert [w.record.subject_did for w in both] == [OTHER_STUDY, OTHER_STUDY]


def test_unrelated_activity_is_not_written() -> None:
    """Nothing involving the study population means no write and no rejection."""
    assert keys(route(STRANGER, "create", "app.bsky.feed.post/3a", post())) == []
    assert keys(route(STRANGER, "create", "app.bsky.feed.like/3l", like(study_post(author=FRIEND)))) == []
    assert keys(route(STRANGER, "create", "app.bsky.graph.follow/3f", follow(FRIEND))) == []
    assert keys(route(STRANGER, "create", "app.bsky.feed.repost/3r", repost(study_post(author=FRIEND)))) == []
    block_of_study = {
        "$type": "app.bsky.graph.block",
        "subject": STUDY,
        "createdAt": "2026-05-25T14:23:27.379Z",
    }
    assert keys(route(STRANGER, "create", "app.bsky.graph.block/3b", block_of_study)) == []
    assert keys(route(STRANGER, "update", "app.bsky.actor.profile/self", {"displayName": "x"})) == []


def test_updates_are_written_like_creates() -> None:
    """An update op is routed by its create's conditions, to the create's handler, as an update."""
    routed = route(STUDY, "update", "app.bsky.feed.post/3a", post("edited"))
    assert keys(routed) == [(K.POST, None)]
    assert not isinstance(routed, Rejection) and routed[0].record.operation == "update"


@pytest.mark.parametrize(
    ("collection", "key"),
    [
        ("app.bsky.feed.post", K.DELETE_POST),
        ("app.bsky.feed.like", K.DELETE_LIKE),
        ("app.bsky.graph.follow", K.DELETE_FOLLOW_FOLLOWER),
    ],
)
def test_study_users_deletes_are_always_recorded(collection: str, key: K) -> None:
    """A study user's delete is written even when the record was never cached."""
    routed = route(STUDY, "delete", f"{collection}/3x")
    assert keys(routed) == [(key, None)]
    assert not isinstance(routed, Rejection)
    record = routed[0].record
    assert (record.operation, record.record, record.cid) == ("delete", None, None)


def test_deletes_of_others_go_through_the_index() -> None:
    """Another account's delete is written under each record type its URI was cached under."""
    assert keys(route(STRANGER, "delete", "app.bsky.feed.like/3l")) == []
    prior = frozenset({K.LIKE_ON_USER_POST})
    assert keys(route(STRANGER, "delete", "app.bsky.feed.like/3l", prior=prior)) == [
        (K.DELETE_LIKE_ON_USER_POST, None)
    ]
    prior = frozenset({K.FOLLOW_FOLLOWEE})
    assert keys(route(STRANGER, "delete", "app.bsky.graph.follow/3f", prior=prior)) == [
        (K.DELETE_FOLLOW_FOLLOWEE, None)
    ]
    prior = frozenset({K.IN_NETWORK_POST})
    assert keys(route(FRIEND, "delete", "app.bsky.feed.post/3a", prior=prior)) == [
        (K.IN_NETWORK_DELETE_POST, FRIEND)
    ]


def test_study_user_repost_nested_by_reposted_rkey() -> None:
    """A study user's repost of any record is a `repost`, nested by the reposted record's rkey."""
    feed = f"at://{STRANGER}/app.bsky.feed.generator/3feed"
    assert keys(route(STUDY, "create", "app.bsky.feed.repost/3r", repost(feed))) == [(K.REPOST, "3feed")]


def test_repost_of_a_study_users_post_by_anyone() -> None:
    """A repost of a study user's post is a `repost_on_user_post`, nested by the post's rkey;
    a study user reposting another study user's post is both."""
    assert keys(route(STRANGER, "create", "app.bsky.feed.repost/3r", repost(study_post()))) == [
        (K.REPOST_ON_USER_POST, "3parent")
    ]
    both = route(STUDY, "create", "app.bsky.feed.repost/3r", repost(study_post(author=OTHER_STUDY)))
    assert sorted(keys(both)) == [(K.REPOST, "3parent"), (K.REPOST_ON_USER_POST, "3parent")]
    assert not isinstance(both, Rejection)
    assert {w.record.record_type for w in both} == {
        "repost",
        "repost_on_user_post",
    }


@pytest.mark.parametrize("media", [False, True])
def test_quote_of_a_study_users_post(media: bool) -> None:
    """A post quoting a study user's post (plain, or inside recordWithMedia) is a
    `quote_of_user_post` nested by the quoted rkey; a quote of a non-post is not."""
    record = quote("look", study_post("3quoted"), media=media)
    assert keys(route(STRANGER, "create", "app.bsky.feed.post/3q", record)) == [
        (K.QUOTE_OF_USER_POST, "3quoted")
    ]
    assert sorted(keys(route(STUDY, "create", "app.bsky.feed.post/3q", record))) == [
        (K.POST, None),
        (K.QUOTE_OF_USER_POST, "3quoted"),
    ]
    feed = quote("look", f"at://{STUDY}/app.bsky.feed.generator/3feed", media=media)
    assert keys(route(STRANGER, "create", "app.bsky.feed.post/3q", feed)) == []
    untyped = {**post(), "embed": {"record": {"uri": study_post()}}}  # no $type: not a quote
    assert keys(route(STRANGER, "create", "app.bsky.feed.post/3q", untyped)) == []


def test_repost_and_quote_deletes() -> None:
    """A study user's repost delete is always kept; others' reposts and quotes go through the index."""
    assert keys(route(STUDY, "delete", "app.bsky.feed.repost/3r")) == [(K.DELETE_REPOST, None)]
    assert keys(route(STRANGER, "delete", "app.bsky.feed.repost/3r")) == []
    prior = frozenset({K.REPOST_ON_USER_POST})
    assert keys(route(STRANGER, "delete", "app.bsky.feed.repost/3r", prior=prior)) == [
        (K.DELETE_REPOST_ON_USER_POST, None)
    ]
    prior = frozenset({K.QUOTE_OF_USER_POST, K.REPLY_TO_USER_POST})
    assert keys(route(STRANGER, "delete", "app.bsky.feed.post/3q", prior=prior)) == [
        (K.DELETE_QUOTE_OF_USER_POST, None),
        (K.DELETE_REPLY_TO_USER_POST, None),
    ]


def test_a_quote_with_a_bad_rkey_is_rejected() -> None:
    """A quote of a study user's post whose rkey is not a record key is rejected, not dropped."""
    record = quote("look", f"at://{STUDY}/app.bsky.feed.post/..", media=True)
    assert route(STRANGER, "create", "app.bsky.feed.post/3q", record) == Rejection(
        "invalid_nested_key:quote_of_user_post", f"at://{STRANGER}/app.bsky.feed.post/3q"
    )


def test_study_delete_unions_with_the_index() -> None:
    """A study user's delete of a reply to a study user is written under both record types, once each."""
    prior = frozenset({K.POST, K.REPLY_TO_USER_POST})
    assert keys(route(STUDY, "delete", "app.bsky.feed.post/3a", prior=prior)) == [
        (K.DELETE_POST, None),
        (K.DELETE_REPLY_TO_USER_POST, None),
    ]


@pytest.mark.parametrize(
    ("repo", "path", "record", "reason"),
    [
        (STUDY, "app.bsky.feed.post/..", post(), "invalid_rkey"),
        (STUDY, "app.bsky.feed.post/.", post(), "invalid_rkey"),
        (
            STUDY,
            "app.bsky.feed.like/3l",
            like(f"at://{STRANGER}/app.bsky.feed.post/.."),
            "invalid_nested_key:like",
        ),
        (
            STRANGER,
            "app.bsky.feed.like/3l",
            like(f"at://{STUDY}/app.bsky.feed.post/../../x"),
            "invalid_nested_key:like_on_user_post",
        ),
        (
            STRANGER,
            "app.bsky.feed.post/3a",
            post(parent=f"at://{STUDY}/app.bsky.feed.post/.."),
            "invalid_nested_key:reply_to_user_post",
        ),
        (STUDY, "app.bsky.graph.follow/3f", follow("../../etc"), "invalid_subject_did:follow"),
        (STUDY, "app.bsky.graph.follow/3f", follow("did:plc:x/../../y"), "invalid_subject_did:follow"),
        (STUDY, "app.bsky.graph.follow/3f", follow({"did": STRANGER}), "invalid_subject_did:follow"),
        (STUDY, "app.bsky.graph.follow/3f", follow("alice.bsky.social"), "invalid_subject_did:follow"),
    ],
)
def test_hostile_records_are_rejected_whole(
    repo: str, path: str, record: dict[str, Any], reason: str
) -> None:
    """A record with an invalid path component yields one rejection and no writes."""
    routed = route(repo, "create", path, record)
    assert isinstance(routed, Rejection)
    assert routed.reason == reason


def test_route_commit_collects_writes_and_rejections_per_op() -> None:
    """A multi-op commit routes each op; one hostile op does not stop the others."""
    ops = (
        RepoOp("create", "app.bsky.feed.post", "3a", CID, post()),
        RepoOp("create", "app.bsky.feed.post", "..", CID, post()),
        RepoOp("delete", "app.bsky.feed.like", "3l", None, None),
    )
    writes, rejections = route_commit(TABLE, Commit(7, STUDY, "3rev", TIME, ops), POPULATION, {}, "t")
    assert [w.key for w in writes] == [K.POST, K.DELETE_LIKE]
    assert rejections == [Rejection("invalid_rkey", f"at://{STUDY}/app.bsky.feed.post/..")]


def test_delete_in_the_same_batch_as_its_create_is_routed(tmp_path: Path) -> None:
    """A create and a later delete of another account's like within one uncommitted batch: the
    delete still finds the create through the writer's pending index rows."""
    study = write_users(tmp_path / "study.txt", [STUDY])
    frames = [
        commit(1, STRANGER, OpSpec("create", "app.bsky.feed.like/3l", like(study_post("3p")))),
        commit(2, STRANGER, OpSpec("delete", "app.bsky.feed.like/3l")),
    ]
    args = ["--cache-dir", str(tmp_path / "c"), "--state", str(tmp_path / "s"), "--no-sync", "-q"]
    assert (
        main([*args, "--study-users", str(study), "--replay", str(write_replay(tmp_path / "r", frames))]) == 0
    )
    assert tree(tmp_path / "c") == {
        f"study_user_activity/create/like_on_user_post/3p/author_did={STRANGER}_like_uri_suffix=3l.json",
        f"study_user_activity/delete/like_on_user_post/author_did={STRANGER}_like_uri_suffix=3l.json",
    }
