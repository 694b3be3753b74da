"""The handler registry, and writing and reading through one config."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncstream import cache
from syncstream.handlers import CREATE_TO_DELETE, HANDLERS, read_records, record_path, write_record
from syncstream.records import CachedRecord, decode_record, encode_record
from syncstream.types import FollowStatus, HandlerKey, Operation, RecordType


def make(key: HandlerKey, **overrides: object) -> CachedRecord:
    values: dict[str, object] = {
        "uri": "at://did:plc:a/app.bsky.feed.post/3k",
        "cid": "bafyreiftot7eltsc3f6g4qktykmbv6jcmdmhcx5osscan6jpdxkpqcmcza",
        "author_did": "did:plc:a",
        "rkey": "3k",
        "collection": "app.bsky.feed.post",
        "operation": key.operation,
        "record_type": key.record_type,
        "seq": 2**35,
        "rev": "3mptbypluud2a",
        "event_time": "2026-07-04T14:38:07.517Z",
        "synctimestamp": "2026-07-04T14:38:08.000000Z",
        "follow_status": key.follow_status,
        "nested_key": "did:plc:a" if HANDLERS[key].nested_path else None,
        "subject_did": "did:plc:b",
        "record": {"text": "hi", "embed": {"ref": {"$link": "bafkrei"}}},
    }
    values.update(overrides)
    return CachedRecord(**values)  # type: ignore[arg-type]


def test_registry_covers_every_key() -> None:
    """HANDLERS has exactly one config per HandlerKey, each under its own key."""
    assert set(HANDLERS) == set(HandlerKey)
    assert all(config.key == key for key, config in HANDLERS.items())


def test_follow_handlers_require_a_status() -> None:
    """Exactly the follow handlers require a follow status."""
    required = {key for key, config in HANDLERS.items() if config.requires_follow_status}
    assert required == {k for k in HandlerKey if k.record_type == RecordType.FOLLOW}


def test_every_create_key_has_a_delete_key() -> None:
    """Deletes routed through the index map each create handler to its delete handler."""
    creates = {k for k in HandlerKey if k.operation == Operation.CREATE}
    assert set(CREATE_TO_DELETE) == creates
    for create, delete in CREATE_TO_DELETE.items():
        assert (delete.operation, delete.record_type, delete.follow_status) == (
            Operation.DELETE,
            create.record_type,
            create.follow_status,
        )


def test_configs_are_frozen() -> None:
    """A handler config cannot be changed after set-up."""
    with pytest.raises(AttributeError):
        HANDLERS[HandlerKey.POST].requires_follow_status = True  # type: ignore[misc]


@pytest.mark.parametrize("key", list(HandlerKey))
def test_write_then_read_round_trips(tmp_path: Path, key: HandlerKey) -> None:
    """What a handler writes, its read strategy finds and decodes identically."""
    config = HANDLERS[key]
    record = make(
        key, collection="app.bsky.graph.follow" if key.record_type == "follow" else "app.bsky.feed.post"
    )
    path = write_record(str(tmp_path), config, record)
    assert path == record_path(str(tmp_path), config, record)
    assert list(read_records(str(tmp_path), config)) == [(path, record)]


def test_file_names_follow_the_seed_tree(tmp_path: Path) -> None:
    """File names and nesting are the ones the architecture gives."""
    root = str(tmp_path)
    like = make(HandlerKey.LIKE, nested_key="3liked", collection="app.bsky.feed.like")
    assert record_path(root, HANDLERS[HandlerKey.LIKE], like) == str(
        tmp_path / "study_user_activity/create/like/3liked/author_did=did:plc:a_like_uri_suffix=3k.json"
    )
    follow = make(HandlerKey.FOLLOW_FOLLOWEE, collection="app.bsky.graph.follow")
    assert record_path(root, HANDLERS[HandlerKey.FOLLOW_FOLLOWEE], follow).endswith(
        "create/follow/followee/follower_did=did:plc:a_followee_did=did:plc:b_follow_uri_suffix=3k.json"
    )
    unfollow = make(HandlerKey.DELETE_FOLLOW_FOLLOWER, collection="app.bsky.graph.follow")
    assert record_path(root, HANDLERS[HandlerKey.DELETE_FOLLOW_FOLLOWER], unfollow).endswith(
        "delete/follow/follower/author_did=did:plc:a_follow_uri_suffix=3k.json"
    )
    assert follow.follow_status == FollowStatus.FOLLOWEE


def test_nested_handler_without_a_nested_key_is_an_error(tmp_path: Path) -> None:
    """A nested handler refuses a record that lost its nested key instead of writing it flat."""
    record = make(HandlerKey.IN_NETWORK_POST, nested_key=None)
    with pytest.raises(ValueError, match="nests by a key"):
        record_path(str(tmp_path), HANDLERS[HandlerKey.IN_NETWORK_POST], record)


def test_record_codec_round_trips_json() -> None:
    """The cache file is plain JSON, decoded back to an equal record."""
    record = make(HandlerKey.POST)
    assert decode_record(encode_record(record)) == record
    assert encode_record(record).startswith(b'{"uri":"at://did:plc:a/app.bsky.feed.post/3k"')


def test_read_strategies_ignore_temporary_files(tmp_path: Path) -> None:
    """Dot-prefixed temporaries are never read as records."""
    config = HANDLERS[HandlerKey.POST]
    directory = tmp_path / HandlerKey.POST.value
    directory.mkdir(parents=True)
    (directory / ".author_did=x_post_uri_suffix=y.json.tmp").write_bytes(b"{")
    (directory / ".hidden.json").write_bytes(b"{")
    assert list(read_records(str(tmp_path), config)) == []
    assert list(cache.read_flat(str(directory))) == []
