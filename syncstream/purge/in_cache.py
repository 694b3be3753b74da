"""What a purge finds of its accounts in the cache: the record files in the tree and in export
claims, and the files set aside (``{cache}/.set-aside/``) that involve them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping

import msgspec

from syncstream.cache import SET_ASIDE, read_bytes
from syncstream.listing import list_tree
from syncstream.purge.rows import Involvement
from syncstream.registry.handlers import HandlerConfig, Registry
from syncstream.registry.records import CachedRecord, decode_record

__all__ = ["cache_files", "set_aside_files"]


def cache_files(
    root: str, handlers: Registry, claim_directories: Iterable[str]
) -> Iterator[tuple[str, HandlerConfig, CachedRecord]]:
    """Every record file in the tree and in the export's claims, with its handler and record."""
    configs = list(handlers.values())
    by_key = {config.key: config for config in configs}
    for directory in [root, *claim_directories]:
        for entry in list_tree(directory, configs):
            path = os.path.join(directory, entry.relpath)
            try:
                with open(path, "rb") as handle:
                    cached = decode_record(handle.read())
            except (OSError, msgspec.DecodeError):
                continue  # gone meanwhile, or not a cache record (the export sets those aside)
            yield path, by_key[entry.key], cached


def set_aside_files(
    root: str, handlers: Registry, involvement: Involvement, involved: set[tuple[str, str, str]]
) -> list[str]:
    """The files in ``{cache}/.set-aside/`` that involve the accounts. They could not become
    rows, so they are read as bytes: one that decodes as a cache record goes by the rules of
    its kind, one that does not goes when it names an account at all (its text may be theirs).
    ``involved`` is the (dataset, URI, follow status) of rows already found kept because of them."""
    by_directory = {config.directory: config for config in handlers.values()}
    found = []
    directory = os.path.join(root, SET_ASIDE)
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                data = read_bytes(entry.path)
            except OSError:
                continue
            if _involved(entry.name, data, by_directory, involvement, involved):
                found.append(entry.path)
    return found


def _involved(
    name: str,
    data: bytes,
    by_directory: Mapping[str, HandlerConfig],
    involvement: Involvement,
    involved: set[tuple[str, str, str]],
) -> bool:
    if not any(did.encode() in data or did in name for did in involvement.dids):
        return False
    try:
        cached = decode_record(data)
    except msgspec.DecodeError:
        return True
    # set aside as its cache path with "/" as "~": the directory names its handler
    config = by_directory.get(os.path.dirname(name.replace("~", "/")))
    if config is None or cached.author_did in involvement.dids:
        return True
    return involvement.selected(config, cached.operation, cached.author_did, cached.record) or (
        (config.dataset.name, cached.uri, config.follow_status or "") in involved
    )
