"""The vocabulary of the cache: operations, record types, handler keys."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "COLLECTION_OF",
    "FOLLOW",
    "LIKE",
    "POST",
    "FollowStatus",
    "HandlerKey",
    "Operation",
    "RecordType",
    "Service",
]

POST = "app.bsky.feed.post"
LIKE = "app.bsky.feed.like"
FOLLOW = "app.bsky.graph.follow"


class Operation(StrEnum):
    CREATE = "create"
    DELETE = "delete"


class RecordType(StrEnum):
    POST = "post"
    LIKE = "like"
    FOLLOW = "follow"
    LIKE_ON_USER_POST = "like_on_user_post"
    REPLY_TO_USER_POST = "reply_to_user_post"


class FollowStatus(StrEnum):
    FOLLOWER = "follower"  # the follow was made by a study user
    FOLLOWEE = "followee"  # the follow is of a study user


class Service(StrEnum):
    STUDY_USER_ACTIVITY = "study_user_activity"
    IN_NETWORK_USER_ACTIVITY = "in_network_user_activity"


class HandlerKey(StrEnum):
    """One key per handler; its value is the handler's directory under the cache root."""

    POST = "study_user_activity/create/post"
    LIKE = "study_user_activity/create/like"
    FOLLOW_FOLLOWER = "study_user_activity/create/follow/follower"
    FOLLOW_FOLLOWEE = "study_user_activity/create/follow/followee"
    LIKE_ON_USER_POST = "study_user_activity/create/like_on_user_post"
    REPLY_TO_USER_POST = "study_user_activity/create/reply_to_user_post"
    DELETE_POST = "study_user_activity/delete/post"
    DELETE_LIKE = "study_user_activity/delete/like"
    DELETE_FOLLOW_FOLLOWER = "study_user_activity/delete/follow/follower"
    DELETE_FOLLOW_FOLLOWEE = "study_user_activity/delete/follow/followee"
    DELETE_LIKE_ON_USER_POST = "study_user_activity/delete/like_on_user_post"
    DELETE_REPLY_TO_USER_POST = "study_user_activity/delete/reply_to_user_post"
    IN_NETWORK_POST = "in_network_user_activity/create/post"
    IN_NETWORK_DELETE_POST = "in_network_user_activity/delete/post"

    @property
    def service(self) -> Service:
        return _FACTS[self][0]

    @property
    def operation(self) -> Operation:
        return _FACTS[self][1]

    @property
    def record_type(self) -> RecordType:
        return _FACTS[self][2]

    @property
    def follow_status(self) -> FollowStatus | None:
        return _FACTS[self][3]


def _facts(key: HandlerKey) -> tuple[Service, Operation, RecordType, FollowStatus | None]:
    parts = key.value.split("/")
    status = FollowStatus(parts[3]) if len(parts) > 3 else None
    return Service(parts[0]), Operation(parts[1]), RecordType(parts[2]), status


# Read on every routed write: parsed once here rather than split per call.
_FACTS = {key: _facts(key) for key in HandlerKey}


COLLECTION_OF: dict[RecordType, str] = {
    RecordType.POST: POST,
    RecordType.LIKE: LIKE,
    RecordType.FOLLOW: FOLLOW,
    RecordType.LIKE_ON_USER_POST: LIKE,
    RecordType.REPLY_TO_USER_POST: POST,
}
