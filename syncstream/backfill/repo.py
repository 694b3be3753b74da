"""A repository export (``com.atproto.sync.getRepo``'s CAR) -> its records, by the MST.

The walk starts at the signed commit (the CAR's root), follows the MST from the commit's
``data`` and reads only the blocks it reaches; every block it reads is checked against its CID
(sha2-256), so a CAR whose blocks do not match, or that lacks one, is refused whole.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import libipld

from syncstream.write.decode import car_blocks, json_model, uvarint

__all__ = ["Repo", "RepoError", "RepoRecord", "read_repo"]


class RepoError(ValueError):
    """The CAR is not a repository this walk can trust."""


class RepoRecord(NamedTuple):
    collection: str
    rkey: str
    cid: str
    record: dict[str, Any]  # in the AT Protocol JSON data model


class Repo(NamedTuple):
    did: str
    rev: str
    records: list[RepoRecord]


class _Blocks:
    def __init__(self, car: bytes) -> None:
        self.car = car
        try:
            self.spans = car_blocks(car)
        except (ValueError, IndexError) as error:
            raise RepoError(f"the CAR does not parse: {error}") from None

    def raw(self, cid: bytes) -> bytes:
        span = self.spans.get(cid)
        if span is None:
            raise RepoError(f"block {libipld.encode_cid(cid)} is missing")
        data = self.car[span[0] : span[1]]
        # CIDv1, a one-byte codec, sha2-256 (what repositories use)
        if len(cid) != 36 or cid[0] != 0x01 or cid[2:4] != b"\x12\x20":
            raise RepoError(f"block {libipld.encode_cid(cid)}: not a CIDv1 sha2-256")
        if hashlib.sha256(data).digest() != cid[4:]:
            raise RepoError(f"block {libipld.encode_cid(cid)} does not match its CID")
        return data

    def node(self, cid: bytes) -> dict[str, Any]:
        try:
            value = libipld.decode_dag_cbor(self.raw(cid))
        except (ValueError, RecursionError) as error:
            raise RepoError(f"block {libipld.encode_cid(cid)} does not decode: {error}") from None
        if not isinstance(value, dict):
            raise RepoError(f"block {libipld.encode_cid(cid)} is not a map")
        return value


def read_repo(car: bytes) -> Repo:
    """The repository's DID, revision and records, in key order."""
    try:
        length, pos = uvarint(car, 0)
    except (IndexError, ValueError):
        raise RepoError("the CAR header is truncated") from None
    try:
        header = libipld.decode_dag_cbor(car[pos : pos + length])
    except ValueError as error:
        raise RepoError(f"the CAR header does not decode: {error}") from None
    roots = header.get("roots") if isinstance(header, dict) else None
    if not isinstance(roots, list) or len(roots) != 1 or not isinstance(roots[0], bytes):
        raise RepoError("the CAR has no single root (the signed commit)")
    blocks = _Blocks(car)
    commit = blocks.node(roots[0])
    did, rev, data = commit.get("did"), commit.get("rev"), commit.get("data")
    if not isinstance(did, str) or not isinstance(rev, str) or not isinstance(data, bytes):
        raise RepoError("the root is not a repository commit (did, rev, data)")
    entries: list[tuple[bytes, bytes]] = []
    _walk(blocks, data, entries, depth=0)
    records = []
    for key, cid in entries:
        collection, _, rkey = key.decode(errors="replace").partition("/")
        raw = blocks.raw(cid)
        try:
            value = libipld.decode_dag_cbor(raw)
            record = json_model(value, raw)
        except (ValueError, RecursionError) as error:
            raise RepoError(f"record {collection}/{rkey} does not decode: {error}") from None
        if not isinstance(record, dict):
            raise RepoError(f"record {collection}/{rkey} is not a map")
        records.append(RepoRecord(collection, rkey, str(libipld.encode_cid(cid)), record))
    return Repo(did, rev, records)


_MAX_DEPTH = 128  # an MST of any real repository is a few levels deep


def _walk(blocks: _Blocks, cid: bytes, out: list[tuple[bytes, bytes]], depth: int) -> None:
    """In key order: the left subtree, then each entry and the subtree to its right."""
    if depth > _MAX_DEPTH:
        raise RepoError("the MST is deeper than any repository's")
    node = blocks.node(cid)
    left, entries = node.get("l"), node.get("e")
    if not isinstance(entries, list):
        raise RepoError(f"MST node {libipld.encode_cid(cid)} has no entries")
    if isinstance(left, bytes):
        _walk(blocks, left, out, depth + 1)
    previous = b""
    for entry in entries:
        if not isinstance(entry, dict):
            raise RepoError("an MST entry is not a map")
        prefix, suffix, value, right = entry.get("p"), entry.get("k"), entry.get("v"), entry.get("t")
        if not isinstance(prefix, int) or not isinstance(suffix, bytes) or not isinstance(value, bytes):
            raise RepoError("an MST entry lacks its key or value")
        previous = previous[:prefix] + suffix
        out.append((previous, value))
        if isinstance(right, bytes):
            _walk(blocks, right, out, depth + 1)
