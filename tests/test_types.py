"""The vocabulary enums: their values appear in paths, in the data and in the state."""

from __future__ import annotations

from syncstream.registry.types import FollowStatus, HandlerKey, Operation, RecordType


def test_enum_values() -> None:
    """The string values are the ones that appear in paths and in the data."""
    assert [o.value for o in Operation] == ["create", "update", "delete"]
    assert [r.value for r in RecordType] == [
        "post",
        "like",
        "follow",
        "repost",
        "like_on_user_post",
        "reply_to_user_post",
        "repost_on_user_post",
        "quote_of_user_post",
        "account_event",
        "profile",
        "block",
    ]
    assert [f.value for f in FollowStatus] == ["follower", "followee"]


def test_handler_keys_are_stable_names() -> None:
    """A handler key's value, kept in the state's index, is its own name: no directory in it."""
    assert all(key.value == key.name.lower() for key in HandlerKey)
    assert all("/" not in key.value for key in HandlerKey)
