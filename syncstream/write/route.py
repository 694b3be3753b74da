"""Routing: one decoded op and the study population -> the cache writes it implies.

Pure: no I/O, no clock. The caller supplies the handler keys that the op's URI was cached under
before (``prior``; used by deletes) and the time the event was received. The conditions of the
architecture's routing table are independent: one op may yield several writes. An op whose
path components are not valid AT Protocol syntax is rejected whole, with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from syncstream.handlers import CREATE_TO_DELETE, HANDLERS
from syncstream.records import CachedRecord
from syncstream.state import Population
from syncstream.syntax import is_did, is_record_key
from syncstream.types import FOLLOW, LIKE, POST, HandlerKey, Operation
from syncstream.write.decode import Commit, RepoOp

__all__ = ["ROUTED_COLLECTIONS", "CacheWrite", "Rejection", "route_commit", "route_op"]

ROUTED_COLLECTIONS = frozenset({POST, LIKE, FOLLOW})
_DELETE_OF_OWN = {
    POST: HandlerKey.DELETE_POST,
    LIKE: HandlerKey.DELETE_LIKE,
    FOLLOW: HandlerKey.DELETE_FOLLOW_FOLLOWER,
}


class CacheWrite(NamedTuple):
    key: HandlerKey
    record: CachedRecord


class Rejection(NamedTuple):
    reason: str
    uri: str


def _authority_of(uri: object) -> str | None:
    """The authority of something shaped like an AT-URI, before any strict check."""
    if not isinstance(uri, str) or not uri.startswith("at://"):
        return None
    return uri[5:].split("/", 1)[0]


def _get(record: Mapping[str, Any] | None, *keys: str) -> object:
    value: object = record
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _is_study_post(uri: object, study: frozenset[str]) -> bool:
    """True when ``uri`` claims to be a post of a study user (strict validity is checked later)."""
    authority = _authority_of(uri)
    if authority is None or authority not in study:
        return False
    parts = str(uri)[5:].split("/")
    return len(parts) > 1 and parts[1] == POST


def _create_keys(op: RepoOp, repo: str, population: Population) -> list[HandlerKey]:
    study, record = population.study, op.record
    keys: list[HandlerKey] = []
    if op.collection == POST:
        if repo in study:
            keys.append(HandlerKey.POST)
        if _is_study_post(_get(record, "reply", "parent", "uri"), study):
            keys.append(HandlerKey.REPLY_TO_USER_POST)
        if repo in population.in_network:
            keys.append(HandlerKey.IN_NETWORK_POST)
    elif op.collection == LIKE:
        if repo in study:
            keys.append(HandlerKey.LIKE)
        if _is_study_post(_get(record, "subject", "uri"), study):
            keys.append(HandlerKey.LIKE_ON_USER_POST)
    elif op.collection == FOLLOW:
        if repo in study:
            keys.append(HandlerKey.FOLLOW_FOLLOWER)
        subject = _get(record, "subject")
        if isinstance(subject, str) and subject in study:
            keys.append(HandlerKey.FOLLOW_FOLLOWEE)
    return keys


def _delete_keys(
    op: RepoOp, repo: str, population: Population, prior: frozenset[HandlerKey]
) -> list[HandlerKey]:
    keys = {CREATE_TO_DELETE[key] for key in prior if key in CREATE_TO_DELETE}
    if repo in population.study:
        keys.add(_DELETE_OF_OWN[op.collection])
    return sorted(keys)


def route_op(
    commit: Commit,
    op: RepoOp,
    population: Population,
    prior: frozenset[HandlerKey],
    synctimestamp: str,
) -> list[CacheWrite] | Rejection:
    """The writes ``op`` implies (possibly none), or the reason it is rejected whole."""
    if op.collection not in ROUTED_COLLECTIONS:
        return []
    repo = commit.repo
    deleting = op.action == "delete"
    keys = _delete_keys(op, repo, population, prior) if deleting else _create_keys(op, repo, population)
    if not keys:
        return []
    uri = f"at://{repo}/{op.collection}/{op.rkey}"
    if not is_did(repo):
        return Rejection("invalid_repo_did", uri)
    if not is_record_key(op.rkey):
        return Rejection("invalid_rkey", uri)
    subject_did: str | None = None
    if op.collection == FOLLOW and not deleting:
        subject = _get(op.record, "subject")
        if not isinstance(subject, str) or not is_did(subject):
            return Rejection("invalid_follow_subject", uri)
        subject_did = subject
    writes: list[CacheWrite] = []
    for key in keys:
        config = HANDLERS[key]
        nested_key: str | None = None
        if config.nested_path is not None:
            nested_key = config.nested_path(repo, None if deleting else op.record)
            if nested_key is None:
                return Rejection(f"invalid_nested_key:{key.record_type}", uri)
        record = CachedRecord(
            uri=uri,
            cid=op.cid,
            author_did=repo,
            rkey=op.rkey,
            collection=op.collection,
            operation=Operation.DELETE if deleting else Operation.CREATE,
            record_type=key.record_type,
            seq=commit.seq,
            rev=commit.rev,
            event_time=commit.time,
            synctimestamp=synctimestamp,
            follow_status=key.follow_status,
            nested_key=nested_key,
            subject_did=subject_did,
            record=op.record,
        )
        writes.append(CacheWrite(key, record))
    return writes


def route_commit(
    commit: Commit,
    population: Population,
    prior: Mapping[str, frozenset[HandlerKey]],
    synctimestamp: str,
) -> tuple[list[CacheWrite], list[Rejection]]:
    """Route every op of a commit against the index as it stood before the commit."""
    writes: list[CacheWrite] = []
    rejections: list[Rejection] = []
    empty: frozenset[HandlerKey] = frozenset()
    for op in commit.ops:
        uri = f"at://{commit.repo}/{op.collection}/{op.rkey}"
        routed = route_op(commit, op, population, prior.get(uri, empty), synctimestamp)
        if isinstance(routed, Rejection):
            rejections.append(routed)
        else:
            writes.extend(routed)
    return writes, rejections
