"""The vocabulary of the cache: operations, record types, handler keys, collections."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACCOUNT",
    "BLOCK",
    "DESYNC",
    "FOLLOW",
    "IDENTITY",
    "LIKE",
    "POST",
    "PROFILE",
    "REPOST",
    "SYNC",
    "FollowStatus",
    "HandlerKey",
    "Operation",
    "RecordType",
    "Service",
]

ACCOUNT, IDENTITY, SYNC = "#account", "#identity", "#sync"  # frames routed as a collection each
DESYNC = "#desync"  # a verified account whose chain broke (``syncstream.write.authentic``)
POST = "app.bsky.feed.post"
LIKE = "app.bsky.feed.like"
REPOST = "app.bsky.feed.repost"
FOLLOW = "app.bsky.graph.follow"
PROFILE = "app.bsky.actor.profile"
BLOCK = "app.bsky.graph.block"


class Operation(StrEnum):
    CREATE = "create"
    UPDATE = "update"  # a new version of a record: routed as its create, kept as its own row
    DELETE = "delete"


class RecordType(StrEnum):
    """The record types of the built-in registry (a cache file's ``record_type``)."""

    POST = "post"
    LIKE = "like"
    FOLLOW = "follow"
    REPOST = "repost"
    LIKE_ON_USER_POST = "like_on_user_post"
    REPLY_TO_USER_POST = "reply_to_user_post"
    REPOST_ON_USER_POST = "repost_on_user_post"
    QUOTE_OF_USER_POST = "quote_of_user_post"
    ACCOUNT_EVENT = "account_event"
    PROFILE = "profile"
    BLOCK = "block"


class FollowStatus(StrEnum):
    FOLLOWER = "follower"  # the follow was made by a study user
    FOLLOWEE = "followee"  # the follow is of a study user


class Service(StrEnum):
    STUDY_USER_ACTIVITY = "study_user_activity"
    IN_NETWORK_USER_ACTIVITY = "in_network_user_activity"


class HandlerKey(StrEnum):
    """The names of the built-in handlers (any non-empty string names a handler of another
    registry). A name is stable: the state keeps it (the index of cached URIs, the handlers that
    wrote); what a handler does (its directory, collection, dataset) is its config's."""

    POST = "post"
    LIKE = "like"
    REPOST = "repost"
    FOLLOW_FOLLOWER = "follow_follower"
    FOLLOW_FOLLOWEE = "follow_followee"
    LIKE_ON_USER_POST = "like_on_user_post"
    REPLY_TO_USER_POST = "reply_to_user_post"
    REPOST_ON_USER_POST = "repost_on_user_post"
    QUOTE_OF_USER_POST = "quote_of_user_post"
    DELETE_POST = "delete_post"
    DELETE_LIKE = "delete_like"
    DELETE_REPOST = "delete_repost"
    DELETE_FOLLOW_FOLLOWER = "delete_follow_follower"
    DELETE_FOLLOW_FOLLOWEE = "delete_follow_followee"
    DELETE_LIKE_ON_USER_POST = "delete_like_on_user_post"
    DELETE_REPLY_TO_USER_POST = "delete_reply_to_user_post"
    DELETE_REPOST_ON_USER_POST = "delete_repost_on_user_post"
    DELETE_QUOTE_OF_USER_POST = "delete_quote_of_user_post"
    IN_NETWORK_POST = "in_network_post"
    IN_NETWORK_DELETE_POST = "in_network_delete_post"
    ACCOUNT_EVENT = "account_event"
    IDENTITY_EVENT = "identity_event"
    SYNC_EVENT = "sync_event"
    DESYNC_EVENT = "desync_event"
    PROFILE = "profile"
    DELETE_PROFILE = "delete_profile"
    BLOCK = "block"
    DELETE_BLOCK = "delete_block"
