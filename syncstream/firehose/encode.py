"""Relay frames built from values: the inverse of ``decode``.

Used to synthesise scenarios (tests, the loopback relay's error frames, benchmark inputs with
fresh sequence numbers). libipld encodes bytes that parse as a CID as a DAG-CBOR link (tag 42),
so CIDs are passed as raw CID bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import libipld

from syncstream.firehose.mst import Tree

__all__ = [
    "OpSpec",
    "cid_for",
    "encode_car",
    "encode_commit_frame",
    "encode_frame",
    "error_frame",
    "event_frame",
    "info_frame",
    "uvarint",
    "with_seq",
]

_DAG_CBOR_SHA256 = b"\x01\x71\x12\x20"


class OpSpec(NamedTuple):
    action: str  # create | update | delete
    path: str  # collection/rkey
    record: Mapping[str, Any] | None = None


def cid_for(block: bytes) -> bytes:
    """The CIDv1 (dag-cbor, sha2-256) of a block, as raw bytes."""
    return _DAG_CBOR_SHA256 + hashlib.sha256(block).digest()


def uvarint(value: int) -> bytes:
    """An unsigned LEB128 varint, as CAR files frame their sections."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_car(roots: Iterable[bytes], blocks: Iterable[tuple[bytes, bytes]]) -> bytes:
    header = libipld.encode_dag_cbor({"roots": list(roots), "version": 1})
    parts = [uvarint(len(header)), header]
    for cid, data in blocks:
        parts += [uvarint(len(cid) + len(data)), cid, data]
    return b"".join(parts)


def encode_frame(header: Mapping[str, Any], body: Mapping[str, Any]) -> bytes:
    return libipld.encode_dag_cbor(dict(header)) + libipld.encode_dag_cbor(dict(body))


def encode_commit_frame(
    *,
    seq: int,
    repo: str,
    rev: str,
    time: str,
    ops: Iterable[OpSpec],
    omit_blocks: bool = False,
    since: str | None = None,
    sign: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    before: dict[str, bytes] | None = None,
) -> bytes:
    """A Sync 1.1 ``#commit`` frame: its CAR slice holds a commit block (signed by ``sign``, e.g.
    ``partial(syncstream.servers.keys.sign_commit, key=...)``), each op's record block and the
    whole MST of the repository after it, whose root is the commit's ``data``; ``prevData`` is
    the root before. ``before`` is the repository's records before (path -> record CID; by
    default, a record for each path the ops update or delete): it is updated to the records
    after, so that the next frame built with it follows on."""
    records = before if before is not None else {}
    placeholder = cid_for(libipld.encode_dag_cbor({"placeholder": True}))
    ops = list(ops)
    for op in ops:
        if op.action != "create" and op.path not in records:
            records[op.path] = placeholder
    tree = Tree.empty()
    for path, value in sorted(records.items()):
        tree.insert(path.encode(), value)
    prev_data = tree.root()
    blocks: list[tuple[bytes, bytes]] = []
    wire_ops: list[dict[str, Any]] = []
    for op in ops:
        cid: bytes | None = None
        if op.record is not None:
            data = libipld.encode_dag_cbor(dict(op.record))
            cid = cid_for(data)
            if not omit_blocks:
                blocks.append((cid, data))
        prev = records.get(op.path) if op.action != "create" else None
        if cid is None:
            records.pop(op.path, None)
            tree.remove(op.path.encode())
        else:
            records[op.path] = cid
            tree.insert(op.path.encode(), cid)
        wire_ops.append({"action": op.action, "path": op.path, "cid": cid, "prev": prev})
    commit: dict[str, Any] = {"did": repo, "rev": rev, "version": 3, "data": tree.root(), "prev": None}
    commit_block = libipld.encode_dag_cbor(commit if sign is None else sign(commit))
    commit_cid = cid_for(commit_block)
    car = encode_car([commit_cid], [(commit_cid, commit_block), *blocks, *tree.blocks().items()])
    body = {
        "seq": seq,
        "repo": repo,
        "rev": rev,
        "time": time,
        "ops": wire_ops,
        "blocks": car,
        "blobs": [],
        "commit": commit_cid,
        "since": since,
        "prevData": prev_data,
        "rebase": False,
        "tooBig": False,
    }
    return encode_frame({"op": 1, "t": "#commit"}, body)


def error_frame(error: str, message: str | None = None) -> bytes:
    body: dict[str, Any] = {"error": error}
    if message is not None:
        body["message"] = message
    return encode_frame({"op": -1}, body)


def info_frame(name: str, message: str | None = None) -> bytes:
    body: dict[str, Any] = {"name": name}
    if message is not None:
        body["message"] = message
    return encode_frame({"op": 1, "t": "#info"}, body)


def event_frame(kind: str, *, seq: int, did: str, time: str, **fields: object) -> bytes:
    """An ``#account``, ``#identity`` or ``#sync`` frame (``kind`` without the ``#``)."""
    return encode_frame({"op": 1, "t": f"#{kind}"}, {"seq": seq, "did": did, "time": time, **fields})


def with_seq(frame: bytes, seq: int) -> bytes:
    """The same frame with another ``seq`` (blocks untouched, links kept as links)."""
    header, body = libipld.decode_dag_cbor_multi(frame)
    body["seq"] = seq
    return encode_frame(header, body)
