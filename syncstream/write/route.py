"""Routing: one decoded op and the study population -> the cache writes it implies.

One generic loop over a registry, precomputed per collection (``routing_table``): a create goes
to every handler of its collection whose selector keeps it; a delete to every delete handler
whose selector keeps it (a study user's own deletes) and to the delete counterpart of every
handler the URI was cached under before (``prior``, from the state's index). The conditions
are independent: one op may yield several writes.

A withdrawn (purged) author's ops yield nothing, whatever they point at.

Pure: no I/O, no clock. An op whose path components are not valid AT Protocol syntax is
rejected whole, with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from syncstream.firehose.decode import Commit, RepoOp
from syncstream.registry.handlers import HandlerConfig, Registry
from syncstream.registry.population import Population
from syncstream.registry.records import CachedRecord
from syncstream.registry.selectors import Selector
from syncstream.registry.syntax import is_cid, is_did, is_record_key
from syncstream.registry.types import Operation

__all__ = ["CacheWrite", "Rejection", "RoutingTable", "route_commit", "route_op", "routing_table"]


class CacheWrite(NamedTuple):
    key: str  # the handler's name in its registry
    record: CachedRecord


class Rejection(NamedTuple):
    reason: str
    uri: str


class _Collection(NamedTuple):
    creates: tuple[tuple[Selector, HandlerConfig], ...]
    deletes: tuple[tuple[Selector, HandlerConfig], ...]  # the deletes kept without the index


class RoutingTable(NamedTuple):
    """A registry arranged for routing, once, when a writer is set up."""

    collections: Mapping[str, _Collection]
    delete_of: Registry  # a create handler -> its delete handler

    @property
    def names(self) -> frozenset[str]:
        """The collections some handler takes (the decoder decodes only their records)."""
        return frozenset(self.collections)


def routing_table(handlers: Registry) -> RoutingTable:
    creates: dict[str, list[tuple[Selector, HandlerConfig]]] = {}
    deletes: dict[str, list[tuple[Selector, HandlerConfig]]] = {}
    for config in handlers.values():
        side = creates if config.operation == Operation.CREATE else deletes
        selected = side.setdefault(config.collection, [])
        if config.select is not None:  # (a create always has one: ``check_registry``)
            selected.append((config.select, config))
    collections = {
        name: _Collection(tuple(creates.get(name, ())), tuple(deletes.get(name, ())))
        for name in creates.keys() | deletes.keys()
    }
    delete_of = {
        key: handlers[config.delete] for key, config in handlers.items() if config.delete is not None
    }
    return RoutingTable(collections, delete_of)


def _deletes(
    table: RoutingTable,
    routes: _Collection,
    repo: str,
    population: Population,
    prior: frozenset[str],
) -> list[HandlerConfig]:
    found = [config for select, config in routes.deletes if select(repo, None, population)]
    if prior:
        keys = {config.key for config in found}
        for key in sorted(prior):
            config = table.delete_of.get(key)  # absent: a handler this registry does not have
            if config is not None and config.key not in keys:
                keys.add(config.key)
                found.append(config)
    return found


def route_op(
    table: RoutingTable,
    commit: Commit,
    op: RepoOp,
    population: Population,
    prior: frozenset[str],
    *,
    synctimestamp: str,
) -> list[CacheWrite] | Rejection:
    """The writes ``op`` implies (possibly none), or the reason it is rejected whole."""
    routes = table.collections.get(op.collection)
    repo = commit.repo
    if routes is None or repo in population.withdrawn:
        return []  # not collected, or by a withdrawn account: never collected again
    if op.action == "delete":
        configs = _deletes(table, routes, repo, population, prior)
    else:
        record = op.record
        configs = [config for select, config in routes.creates if select(repo, record, population)]
    if not configs:
        return []
    uri = f"at://{repo}/{op.collection}/{op.rkey}"
    if not is_did(repo):
        return Rejection("invalid_repo_did", uri)
    if not is_record_key(op.rkey):
        return Rejection("invalid_rkey", uri)
    deleting = op.action == "delete"
    record = None if deleting else op.record
    operation = Operation.DELETE if deleting else Operation(op.action)
    if operation == Operation.UPDATE and not is_cid(op.cid):
        return Rejection("invalid_cid", uri)  # an update's cid names its version's file
    writes: list[CacheWrite] = []
    for config in configs:
        nested_key: str | None = None
        if config.nested_path is not None:
            nested_key = config.nested_path(repo, record)
            if nested_key is None:
                return Rejection(f"invalid_nested_key:{config.record_type}", uri)
        subject_did: str | None = None
        if config.subject_did is not None:
            subject_did = config.subject_did(record)
            if subject_did is None:
                return Rejection(f"invalid_subject_did:{config.record_type}", uri)
        cached = CachedRecord(
            uri=uri,
            cid=op.cid,
            author_did=repo,
            rkey=op.rkey,
            collection=op.collection,
            operation=operation,
            record_type=config.record_type,
            seq=commit.seq,
            rev=commit.rev,
            event_time=commit.time,
            synctimestamp=synctimestamp,
            follow_status=config.follow_status,
            nested_key=nested_key,
            subject_did=subject_did,
            record=record,
            source=commit.source,
            verified=commit.verified,
        )
        writes.append(CacheWrite(config.key, cached))
    return writes


def route_commit(
    table: RoutingTable,
    commit: Commit,
    population: Population,
    prior: Mapping[str, frozenset[str]],
    synctimestamp: str,
) -> tuple[list[CacheWrite], list[Rejection]]:
    """Route every op of a commit against the index as it stood before the commit."""
    writes: list[CacheWrite] = []
    rejections: list[Rejection] = []
    empty: frozenset[str] = frozenset()
    for op in commit.ops:
        cached = prior.get(f"at://{commit.repo}/{op.collection}/{op.rkey}", empty) if prior else empty
        routed = route_op(table, commit, op, population, cached, synctimestamp=synctimestamp)
        if isinstance(routed, Rejection):
            rejections.append(routed)
        else:
            writes.extend(routed)
    return writes, rejections
