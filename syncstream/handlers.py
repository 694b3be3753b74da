"""Handlers: one frozen config per ``HandlerKey``, in a literal registry.

A handler is data: how to name a record's file, which value (if any) nests it one directory
down, how to find its files again, and whether it needs a follow status. Writing and reading
both go through the same config, so they cannot disagree about where a record lives.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping

from syncstream import cache, paths
from syncstream.config import Config
from syncstream.records import CachedRecord, decode_record, encode_record
from syncstream.types import HandlerKey

__all__ = [
    "CREATE_TO_DELETE",
    "HANDLERS",
    "Config",
    "HandlerConfig",
    "ReadStrategy",
    "read_records",
    "record_path",
    "write_record",
]

ReadStrategy = Callable[[str], Iterator[str]]
"""A handler directory -> the paths of the record files in it."""


class HandlerConfig(Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: HandlerKey
    path_strategy: paths.PathStrategy
    nested_path: paths.NestedPathExtractor | None
    read_strategy: ReadStrategy
    requires_follow_status: bool = False


def _config(
    key: HandlerKey,
    path_strategy: paths.PathStrategy,
    nested_path: paths.NestedPathExtractor | None = None,
) -> HandlerConfig:
    return HandlerConfig(
        key=key,
        path_strategy=path_strategy,
        nested_path=nested_path,
        read_strategy=cache.read_flat if nested_path is None else cache.read_nested,
        requires_follow_status=key.follow_status is not None,
    )


K = HandlerKey
HANDLERS: Mapping[HandlerKey, HandlerConfig] = {
    K.POST: _config(K.POST, paths.post_file_name),
    K.LIKE: _config(K.LIKE, paths.like_file_name, paths.liked_record_rkey),
    K.FOLLOW_FOLLOWER: _config(K.FOLLOW_FOLLOWER, paths.follow_file_name),
    K.FOLLOW_FOLLOWEE: _config(K.FOLLOW_FOLLOWEE, paths.follow_file_name),
    K.LIKE_ON_USER_POST: _config(K.LIKE_ON_USER_POST, paths.like_file_name, paths.study_post_rkey),
    K.REPLY_TO_USER_POST: _config(K.REPLY_TO_USER_POST, paths.post_file_name, paths.reply_parent_rkey),
    K.DELETE_POST: _config(K.DELETE_POST, paths.delete_file_name),
    K.DELETE_LIKE: _config(K.DELETE_LIKE, paths.delete_file_name),
    K.DELETE_FOLLOW_FOLLOWER: _config(K.DELETE_FOLLOW_FOLLOWER, paths.delete_file_name),
    K.DELETE_FOLLOW_FOLLOWEE: _config(K.DELETE_FOLLOW_FOLLOWEE, paths.delete_file_name),
    K.DELETE_LIKE_ON_USER_POST: _config(K.DELETE_LIKE_ON_USER_POST, paths.delete_file_name),
    K.DELETE_REPLY_TO_USER_POST: _config(K.DELETE_REPLY_TO_USER_POST, paths.delete_file_name),
    K.IN_NETWORK_POST: _config(K.IN_NETWORK_POST, paths.post_file_name, paths.author_directory),
    K.IN_NETWORK_DELETE_POST: _config(
        K.IN_NETWORK_DELETE_POST, paths.delete_file_name, paths.author_directory
    ),
}

CREATE_TO_DELETE: Mapping[HandlerKey, HandlerKey] = {
    K.POST: K.DELETE_POST,
    K.LIKE: K.DELETE_LIKE,
    K.FOLLOW_FOLLOWER: K.DELETE_FOLLOW_FOLLOWER,
    K.FOLLOW_FOLLOWEE: K.DELETE_FOLLOW_FOLLOWEE,
    K.LIKE_ON_USER_POST: K.DELETE_LIKE_ON_USER_POST,
    K.REPLY_TO_USER_POST: K.DELETE_REPLY_TO_USER_POST,
    K.IN_NETWORK_POST: K.IN_NETWORK_DELETE_POST,
}


def record_path(root: str, config: HandlerConfig, record: CachedRecord) -> str:
    """Where ``record`` lives; its components were validated when it was routed, and each
    name is bounded (``paths.bounded_name``), so that every spec-valid value has a path."""
    name = paths.bounded_name(config.path_strategy(record))
    if config.nested_path is None:
        return os.path.join(root, config.key.value, name)
    if record.nested_key is None:
        raise ValueError(f"{config.key} nests by a key, and the record has none: {record.uri}")
    return os.path.join(root, config.key.value, paths.bounded_name(record.nested_key), name)


def write_record(root: str, config: HandlerConfig, record: CachedRecord) -> str:
    path = record_path(root, config, record)
    cache.write_atomic(path, encode_record(record))
    return path


def read_records(root: str, config: HandlerConfig) -> Iterator[tuple[str, CachedRecord]]:
    for path in config.read_strategy(os.path.join(root, config.key.value)):
        yield path, decode_record(cache.read_bytes(path))
