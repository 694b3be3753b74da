"""The built-in registry: a handler per kind of activity the study collects, as one table.

``HANDLERS`` is the default registry of every command (``--handlers`` names another); its keys
are the ``HandlerKey`` names, kept in the state (never rename one).
"""

from __future__ import annotations

from syncstream.registry import datasets as ds
from syncstream.registry import paths
from syncstream.registry import selectors as select
from syncstream.registry.datasets import Dataset
from syncstream.registry.handlers import HandlerConfig, Registry, SubjectExtractor, create_handler
from syncstream.registry.selectors import Selector
from syncstream.registry.types import (
    ACCOUNT,
    BLOCK,
    DESYNC,
    FOLLOW,
    IDENTITY,
    LIKE,
    POST,
    PROFILE,
    REPOST,
    SYNC,
    FollowStatus,
    HandlerKey,
    Operation,
    RecordType,
)

__all__ = ["HANDLERS"]


def _create(  # noqa: PLR0917 (the registry reads as a table, a column per argument)
    key: HandlerKey,
    directory: str,
    collection: str,
    record_type: str,
    select: Selector,
    path_strategy: paths.PathStrategy,
    dataset: Dataset,
    *,
    delete: HandlerKey | None,
    nested_path: paths.NestedPathExtractor | None = None,
    follow_status: FollowStatus | None = None,
    subject_did: SubjectExtractor | None = None,
) -> HandlerConfig:
    return create_handler(
        key=key, directory=directory, collection=collection, record_type=record_type, select=select,
        path_strategy=path_strategy, dataset=dataset, delete=delete, nested_path=nested_path,
        follow_status=follow_status, subject_did=subject_did,
    )  # fmt: skip


def _delete(  # noqa: PLR0917 (as _create)
    key: HandlerKey,
    directory: str,
    collection: str,
    record_type: str,
    select: Selector | None,
    path_strategy: paths.PathStrategy,
    dataset: Dataset,
    *,
    nested_path: paths.NestedPathExtractor | None = None,
    follow_status: FollowStatus | None = None,
) -> HandlerConfig:
    return HandlerConfig(
        key=key, directory=directory, collection=collection, operation=Operation.DELETE,
        record_type=record_type, select=select, path_strategy=path_strategy, nested_path=nested_path,
        dataset=dataset, follow_status=follow_status,
    )  # fmt: skip


def _event(key: HandlerKey, frame: str) -> HandlerConfig:
    directory = f"population/account_event/{frame.removeprefix('#')}"
    return _create(
        key, directory, frame, RecordType.ACCOUNT_EVENT, select.author_in_population, paths.event_file_name,
        ds.ACCOUNT_EVENTS, delete=None,
    )  # fmt: skip


K, R, F = HandlerKey, RecordType, FollowStatus
STUDY, IN_NETWORK = "study_user_activity", "in_network_user_activity"

# fmt: off
HANDLERS: Registry = {
    # a study user's own records, and their deletes
    K.POST: _create(
        K.POST, f"{STUDY}/create/post", POST, R.POST, select.author_in_study, paths.post_file_name,
        ds.POSTS, delete=K.DELETE_POST,
    ),
    K.DELETE_POST: _delete(
        K.DELETE_POST, f"{STUDY}/delete/post", POST, R.POST, select.author_in_study,
        paths.post_file_name, ds.POSTS,
    ),
    K.LIKE: _create(
        K.LIKE, f"{STUDY}/create/like", LIKE, R.LIKE, select.author_in_study, paths.like_file_name,
        ds.LIKES, nested_path=paths.subject_rkey, delete=K.DELETE_LIKE,
    ),
    K.DELETE_LIKE: _delete(
        K.DELETE_LIKE, f"{STUDY}/delete/like", LIKE, R.LIKE, select.author_in_study,
        paths.like_file_name, ds.LIKES,
    ),
    K.REPOST: _create(
        K.REPOST, f"{STUDY}/create/repost", REPOST, R.REPOST, select.author_in_study,
        paths.repost_file_name, ds.REPOSTS, nested_path=paths.subject_rkey, delete=K.DELETE_REPOST,
    ),
    K.DELETE_REPOST: _delete(
        K.DELETE_REPOST, f"{STUDY}/delete/repost", REPOST, R.REPOST, select.author_in_study,
        paths.repost_file_name, ds.REPOSTS,
    ),
    K.FOLLOW_FOLLOWER: _create(
        K.FOLLOW_FOLLOWER, f"{STUDY}/create/follow/follower", FOLLOW, R.FOLLOW, select.author_in_study,
        paths.follow_file_name, ds.FOLLOWS, delete=K.DELETE_FOLLOW_FOLLOWER, follow_status=F.FOLLOWER,
        subject_did=paths.follow_subject_did,
    ),
    K.DELETE_FOLLOW_FOLLOWER: _delete(
        K.DELETE_FOLLOW_FOLLOWER, f"{STUDY}/delete/follow/follower", FOLLOW, R.FOLLOW,
        select.author_in_study, paths.follow_delete_file_name, ds.FOLLOWS, follow_status=F.FOLLOWER,
    ),
    K.PROFILE: _create(
        K.PROFILE, f"{STUDY}/create/profile", PROFILE, R.PROFILE, select.author_in_study,
        paths.profile_file_name, ds.PROFILES, delete=K.DELETE_PROFILE,
    ),
    K.DELETE_PROFILE: _delete(
        K.DELETE_PROFILE, f"{STUDY}/delete/profile", PROFILE, R.PROFILE, select.author_in_study,
        paths.profile_file_name, ds.PROFILES,
    ),
    K.BLOCK: _create(
        K.BLOCK, f"{STUDY}/create/block", BLOCK, R.BLOCK, select.author_in_study, paths.block_file_name,
        ds.BLOCKS, delete=K.DELETE_BLOCK,
    ),
    K.DELETE_BLOCK: _delete(
        K.DELETE_BLOCK, f"{STUDY}/delete/block", BLOCK, R.BLOCK, select.author_in_study,
        paths.block_file_name, ds.BLOCKS,
    ),
    # records of anyone, about a study user or a study user's post
    K.FOLLOW_FOLLOWEE: _create(
        K.FOLLOW_FOLLOWEE, f"{STUDY}/create/follow/followee", FOLLOW, R.FOLLOW, select.subject_in_study,
        paths.follow_file_name, ds.FOLLOWS, delete=K.DELETE_FOLLOW_FOLLOWEE, follow_status=F.FOLLOWEE,
        subject_did=paths.follow_subject_did,
    ),
    K.DELETE_FOLLOW_FOLLOWEE: _delete(
        K.DELETE_FOLLOW_FOLLOWEE, f"{STUDY}/delete/follow/followee", FOLLOW, R.FOLLOW, None,
        paths.follow_delete_file_name, ds.FOLLOWS, follow_status=F.FOLLOWEE,
    ),
    K.LIKE_ON_USER_POST: _create(
        K.LIKE_ON_USER_POST, f"{STUDY}/create/like_on_user_post", LIKE, R.LIKE_ON_USER_POST,
        select.subject_is_study_post, paths.like_file_name, ds.LIKES_ON_USER_POSTS,
        nested_path=paths.subject_post_rkey, delete=K.DELETE_LIKE_ON_USER_POST,
    ),
    K.DELETE_LIKE_ON_USER_POST: _delete(
        K.DELETE_LIKE_ON_USER_POST, f"{STUDY}/delete/like_on_user_post", LIKE, R.LIKE_ON_USER_POST,
        None, paths.like_file_name, ds.LIKES_ON_USER_POSTS,
    ),
    K.REPLY_TO_USER_POST: _create(
        K.REPLY_TO_USER_POST, f"{STUDY}/create/reply_to_user_post", POST, R.REPLY_TO_USER_POST,
        select.replies_to_study_post, paths.post_file_name, ds.REPLIES_TO_USER_POSTS,
        nested_path=paths.reply_parent_rkey, delete=K.DELETE_REPLY_TO_USER_POST,
    ),
    K.DELETE_REPLY_TO_USER_POST: _delete(
        K.DELETE_REPLY_TO_USER_POST, f"{STUDY}/delete/reply_to_user_post", POST, R.REPLY_TO_USER_POST,
        None, paths.post_file_name, ds.REPLIES_TO_USER_POSTS,
    ),
    K.REPOST_ON_USER_POST: _create(
        K.REPOST_ON_USER_POST, f"{STUDY}/create/repost_on_user_post", REPOST, R.REPOST_ON_USER_POST,
        select.subject_is_study_post, paths.repost_file_name, ds.REPOSTS_ON_USER_POSTS,
        nested_path=paths.subject_post_rkey, delete=K.DELETE_REPOST_ON_USER_POST,
    ),
    K.DELETE_REPOST_ON_USER_POST: _delete(
        K.DELETE_REPOST_ON_USER_POST, f"{STUDY}/delete/repost_on_user_post", REPOST,
        R.REPOST_ON_USER_POST, None, paths.repost_file_name, ds.REPOSTS_ON_USER_POSTS,
    ),
    K.QUOTE_OF_USER_POST: _create(
        K.QUOTE_OF_USER_POST, f"{STUDY}/create/quote_of_user_post", POST, R.QUOTE_OF_USER_POST,
        select.quotes_study_post, paths.post_file_name, ds.QUOTES_OF_USER_POSTS,
        nested_path=paths.quoted_post_rkey, delete=K.DELETE_QUOTE_OF_USER_POST,
    ),
    K.DELETE_QUOTE_OF_USER_POST: _delete(
        K.DELETE_QUOTE_OF_USER_POST, f"{STUDY}/delete/quote_of_user_post", POST, R.QUOTE_OF_USER_POST,
        None, paths.post_file_name, ds.QUOTES_OF_USER_POSTS,
    ),
    # in-network users' posts, nested by author
    K.IN_NETWORK_POST: _create(
        K.IN_NETWORK_POST, f"{IN_NETWORK}/create/post", POST, R.POST, select.author_in_network,
        paths.post_file_name, ds.IN_NETWORK_POSTS, nested_path=paths.author_directory,
        delete=K.IN_NETWORK_DELETE_POST,
    ),
    K.IN_NETWORK_DELETE_POST: _delete(
        K.IN_NETWORK_DELETE_POST, f"{IN_NETWORK}/delete/post", POST, R.POST, select.author_in_network,
        paths.post_file_name, ds.IN_NETWORK_POSTS, nested_path=paths.author_directory,
    ),
    # events of study and in-network accounts (a frame type each; nothing deletes them)
    K.ACCOUNT_EVENT: _event(K.ACCOUNT_EVENT, ACCOUNT),
    K.IDENTITY_EVENT: _event(K.IDENTITY_EVENT, IDENTITY),
    K.SYNC_EVENT: _event(K.SYNC_EVENT, SYNC),
    K.DESYNC_EVENT: _event(K.DESYNC_EVENT, DESYNC),
}
# fmt: on
