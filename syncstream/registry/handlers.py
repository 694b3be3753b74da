"""Handlers: one frozen config per handler name, in a literal registry.

A handler is data: which ops it takes (a collection, an operation and a selector over the study
population), where their files go (a directory, a file name, the value that nests it one
directory down), how to find them again, its delete counterpart, and the dataset its rows are
exported to. Routing, writing, reading, claiming and exporting all go through the config, so
they cannot disagree; a registry is any ``Mapping[str, HandlerConfig]`` (a ``Registry``) given
to a system at set-up (``HANDLERS``, keyed by ``HandlerKey``, by default), checked there by
``check_registry``. ``create_handler`` and ``delete_handler`` build entries.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec

from syncstream.errors import ConfigError
from syncstream.registry import datasets as ds
from syncstream.registry import paths, reading
from syncstream.registry.config import Config
from syncstream.registry.datasets import Dataset
from syncstream.registry.records import BACKFILL, CachedRecord
from syncstream.registry.selectors import Selector
from syncstream.registry.types import (
    FollowStatus,
    Operation,
)

__all__ = [
    "Config",
    "HandlerConfig",
    "ReadStrategy",
    "Registry",
    "SubjectExtractor",
    "check_registry",
    "create_handler",
    "datasets_of",
    "delete_handler",
    "record_path",
]

ReadStrategy = Callable[[str], Iterator[str]]
"""A handler directory -> the paths of the record files in it."""

SubjectExtractor = Callable[[dict[str, Any] | None], str | None]
"""A record -> the DID it is about (a follow's subject), or None when it has no valid one."""


class HandlerConfig(Config, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: str  # its name: the registry's key, kept in the state (never rename it)
    directory: str  # under the cache root
    collection: str  # the NSID of the records it takes ...
    operation: Operation  # ... and the operation
    record_type: str  # its cache files' record_type
    select: Selector | None  # does an op belong here? None: only a delete found in the index
    path_strategy: paths.PathStrategy
    nested_path: paths.NestedPathExtractor | None
    dataset: Dataset
    delete: str | None = None  # a create's counterpart, for deletes found in the index
    follow_status: FollowStatus | None = None
    subject_did: SubjectExtractor | None = None  # checked, and kept as the file's subject_did

    @property
    def read_strategy(self) -> ReadStrategy:
        """How the files are found again: derived from the nesting, never set beside it, so
        that it lists exactly what the path strategy writes."""
        return reading.read_flat if self.nested_path is None else reading.read_nested


Registry = Mapping[str, HandlerConfig]
"""Handler name -> its config; the config's ``key`` is its name."""


def create_handler(
    *,
    key: str,
    directory: str,
    collection: str,
    record_type: str,
    select: Selector,
    path_strategy: paths.PathStrategy,
    dataset: Dataset,
    delete: str | None = None,
    nested_path: paths.NestedPathExtractor | None = None,
    follow_status: FollowStatus | None = None,
    subject_did: SubjectExtractor | None = None,
) -> HandlerConfig:
    """A handler of creates (and updates, routed as their create) of ``collection``: ``select``
    keeps an op, ``path_strategy`` names its file in ``directory`` (one level down, in the
    directory ``nested_path`` returns, when given), and ``dataset`` exports it. ``delete`` names
    its delete handler (``delete_handler``), which routes other accounts' deletes through the
    index of what this one cached."""
    return HandlerConfig(
        key=key,
        directory=directory,
        collection=collection,
        operation=Operation.CREATE,
        record_type=record_type,
        select=select,
        path_strategy=path_strategy,
        nested_path=nested_path,
        dataset=dataset,
        delete=delete,
        follow_status=follow_status,
        subject_did=subject_did,
    )


def delete_handler(
    *,
    key: str,
    create: HandlerConfig,
    directory: str,
    select: Selector | None = None,
    path_strategy: paths.PathStrategy | None = None,
    nested_path: paths.NestedPathExtractor | None = None,
) -> HandlerConfig:
    """The delete counterpart of ``create`` (its collection, record type, follow status and
    dataset), writing to ``directory``. ``select`` keeps a delete by its author alone (a delete
    has no record); without one, only deletes of what ``create`` cached are kept (through the
    index). ``path_strategy`` defaults to the create's; ``nested_path`` can use the author only."""
    return msgspec.structs.replace(
        create,
        key=key,
        directory=directory,
        operation=Operation.DELETE,
        select=select,
        path_strategy=path_strategy or create.path_strategy,
        nested_path=nested_path,
        delete=None,
        subject_did=None,
    )


def check_registry(handlers: Registry) -> None:
    """Raise ``ConfigError`` unless ``handlers`` is a registry every part can work from: each
    config under its own name (a non-empty string), directories that are safe, distinct and not
    inside one another, delete counterparts present, one dataset per dataset name, and columns
    that read what a cache file and their view carry."""
    directories: dict[str, str] = {}
    named: dict[str, Dataset] = {}
    for key, config in handlers.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"handler keys are names: {key!r} is not a non-empty string")
        if not isinstance(config, HandlerConfig):
            raise ConfigError(f"{key}: {type(config).__name__} is not a HandlerConfig")
        if config.key != key:
            raise ConfigError(f"the registry holds the config of {config.key} under {key}")
        parts = config.directory.split("/")
        if any(not p or p.startswith(".") or len(p.encode()) > paths.MAX_NAME_BYTES for p in parts):
            raise ConfigError(f"{key}: {config.directory!r} is not a directory under the cache root")
        for other, other_key in directories.items():
            if (
                config.directory == other
                or other.startswith(config.directory + "/")
                or (config.directory.startswith(other + "/"))
            ):
                raise ConfigError(f"{key} and {other_key} share the directory {config.directory!r}")
        directories[config.directory] = key
        problem = _unlisted_name(config)
        if problem is not None:
            raise ConfigError(f"{key}: its path strategy {problem}, which its read strategy never lists")
        if config.operation == Operation.CREATE and config.select is None:
            raise ConfigError(f"{key} takes creates, and has no selector")
        if config.delete is not None:
            counterpart = handlers.get(config.delete)
            if counterpart is None:
                raise ConfigError(f"{key} names {config.delete} as its delete, and the registry has none")
            if counterpart.operation != Operation.DELETE or counterpart.collection != config.collection:
                raise ConfigError(f"{config.delete} is not a delete of {config.collection}")
        if named.setdefault(config.dataset.name, config.dataset) != config.dataset:
            raise ConfigError(f"two different datasets are named {config.dataset.name}")
    for dataset in named.values():
        problem = ds.unreadable_column(dataset)
        if problem is not None:
            raise ConfigError(f"dataset {dataset.name}: {problem}")


def _unlisted_name(config: HandlerConfig) -> str | None:
    """What is wrong with the file name ``config`` gives a sample record, when the read
    strategies (``.json`` files, no temporaries, in the handler's directory or one level down)
    would never list it; None when nothing is, or when the strategy cannot name a sample."""
    sample = CachedRecord(
        uri=f"at://did:plc:sample/{config.collection}/3ksample", cid=None, author_did="did:plc:sample",
        rkey="3ksample", collection=config.collection, operation=config.operation,
        record_type=config.record_type, seq=1, rev="3ksample", event_time="1970-01-01T00:00:00Z",
        synctimestamp="1970-01-01T00:00:00.000000Z", follow_status=config.follow_status,
        nested_key="3ksample", subject_did="did:plc:subject",
    )  # fmt: skip
    try:
        name = config.path_strategy(sample)
    except Exception:  # a strategy that needs more of a record than a sample has: not judged
        return None
    if not isinstance(name, str) or not name.endswith(".json"):
        return f"names a file {name!r}, not a .json file"
    if name.startswith(".") or "/" in name:
        return f"names a file {name!r}, a temporary's name or a path"
    return None


def datasets_of(handlers: Registry) -> dict[str, Dataset]:
    """The registry's datasets by name, in the order of their first handler."""
    return {config.dataset.name: config.dataset for config in handlers.values()}


def record_path(root: str, config: HandlerConfig, record: CachedRecord) -> str:
    """Where ``record`` lives; its components were validated when it was routed, and each
    name is bounded (``paths.bounded_name``), so that every spec-valid value has a path."""
    name = config.path_strategy(record)
    if record.operation == Operation.UPDATE or (record.source == BACKFILL and record.cid):
        # A version of its own: a backfilled record is the version its repository holds now,
        # maybe a later one than a create seen live, whose file it must not replace.
        name = paths.version_name(name, record)
    name = paths.bounded_name(name)
    if config.nested_path is None:
        return os.path.join(root, config.directory, name)
    if record.nested_key is None:
        raise ValueError(f"{config.key} nests by a key, and the record has none: {record.uri}")
    return os.path.join(root, config.directory, paths.bounded_name(record.nested_key), name)
