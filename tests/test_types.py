"""The vocabulary enums and the facts a handler key carries."""

from __future__ import annotations

from syncstream.types import FollowStatus, HandlerKey, Operation, RecordType, Service


def test_enum_values() -> None:
    """The string values are the ones that appear in paths and in the data."""
    assert [o.value for o in Operation] == ["create", "delete"]
    assert [r.value for r in RecordType] == [
        "post",
        "like",
        "follow",
        "like_on_user_post",
        "reply_to_user_post",
    ]
    assert [f.value for f in FollowStatus] == ["follower", "followee"]


def test_handler_key_facts() -> None:
    """A handler key's value is its directory, and its parts name service, operation, type, status."""
    key = HandlerKey.DELETE_FOLLOW_FOLLOWEE
    assert (key.service, key.operation, key.record_type, key.follow_status) == (
        Service.STUDY_USER_ACTIVITY,
        Operation.DELETE,
        RecordType.FOLLOW,
        FollowStatus.FOLLOWEE,
    )
    assert HandlerKey.IN_NETWORK_POST.service == Service.IN_NETWORK_USER_ACTIVITY
    assert HandlerKey.POST.follow_status is None
    assert len(HandlerKey) == 14
