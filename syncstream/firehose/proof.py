"""A ``#commit``'s or ``#sync``'s content checked against its signed commit (Sync 1.1), as
indigo's ``VerifyCommitMessage`` does, trusting nothing the relay adds:

- every block of the CAR slice hashes to its CID (CIDv1, dag-cbor or raw, sha2-256; any other
  hash or codec refused);
- the frame's ``commit`` CID is a block of the slice, a commit naming the frame's ``repo`` and
  ``rev`` (an old signed commit under a new frame is refused);
- each op has its shape (create: ``cid``, no ``prev``; update: both; delete: ``prev`` only),
  paths are distinct, and the tree under the commit's ``data`` holds each create's and
  update's ``cid`` at its path and no delete's path;
- with ``prevData``: the ops applied in reverse to that partial tree give ``prevData`` (a
  frame that drops an op, adds one, or re-points one gives another root).

Whatever fails raises ``ProofError`` whose ``reason`` is the check's name; the signature is
``syncstream.verify``'s.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import libipld

from syncstream.errors import ProofError
from syncstream.firehose.decode import Decoded, uvarint
from syncstream.firehose.mst import Tree

__all__ = ["Proved", "prove"]

# the CIDs a block may have: CIDv1, dag-cbor (commits, nodes, records) or raw, sha2-256
_PREFIXES = frozenset((b"\x01\x71\x12\x20", b"\x01\x55\x12\x20"))
_SHAPES = {"create": (True, False), "update": (True, True), "delete": (False, True)}  # (cid, prev)


class Proved(NamedTuple):
    commit: dict[str, Any]  # the signed commit, decoded
    data: bytes  # its MST root
    inverted: bool  # the ops were inverted to prevData (False: no prevData, paths only)


def _blocks(car: bytes) -> dict[bytes, bytes]:
    """CID -> block of every block of ``car``, each hashed against its CID.

    One pass over the CAR framing, hashing as it goes (this runs for every commit verified);
    a CID repeated keeps its first block, as ``decode.car_blocks`` does."""
    blocks: dict[bytes, bytes] = {}
    sha256 = hashlib.sha256
    try:
        header_length, pos = uvarint(car, 0)
        pos += header_length
        size = len(car)
        while pos < size:
            byte = car[pos]
            if byte < 0x80:
                length, pos = byte, pos + 1
            elif car[pos + 1] < 0x80:
                length, pos = (byte & 0x7F) | (car[pos + 1] << 7), pos + 2
            else:
                length, pos = uvarint(car, pos)
            end = pos + length
            if end > size or length < 36:
                raise ValueError("truncated CAR block")
            cid = car[pos : pos + 36]
            if cid[:4] not in _PREFIXES:
                raise ProofError(
                    "a block's CID is not a CIDv1 (dag-cbor or raw) over sha2-256", "bad_block_hash"
                )
            if cid not in blocks:
                block = car[pos + 36 : end]
                if sha256(block).digest() != cid[4:]:
                    raise ProofError(f"block {_text(cid)} does not hash to its CID", "bad_block_hash")
                blocks[cid] = block
            pos = end
    except (ValueError, IndexError):
        raise ProofError("the CAR slice does not parse", "bad_block_hash") from None
    return blocks


def _car_root(car: bytes) -> bytes | None:
    try:
        length, pos = uvarint(car, 0)
        roots = libipld.decode_dag_cbor(car[pos : pos + length]).get("roots")
    except (ValueError, IndexError, AttributeError, RecursionError):
        return None
    return roots[0] if isinstance(roots, list) and len(roots) == 1 and isinstance(roots[0], bytes) else None


def _commit(blocks: dict[bytes, bytes], root: bytes | None, did: str, rev: str | None) -> dict[str, Any]:
    block = blocks.get(root) if root is not None else None
    if block is None:
        raise ProofError("the frame's commit CID is not a block of its CAR slice", "commit_mismatch")
    try:
        commit = libipld.decode_dag_cbor(block)
    except (ValueError, RecursionError):
        raise ProofError("the commit block does not decode", "commit_mismatch") from None
    if not isinstance(commit, dict) or not isinstance(commit.get("data"), bytes):
        raise ProofError("the commit block is not a repository commit", "commit_mismatch")
    if commit.get("did") != did:
        raise ProofError(
            f"the signed commit is of {commit.get('did')!r}, the frame of {did}", "commit_mismatch"
        )
    if rev is not None and commit.get("rev") != rev:
        raise ProofError(
            f"the signed commit is rev {commit.get('rev')!r}, the frame {rev!r}", "commit_mismatch"
        )
    return commit


def _ops(wire: tuple[Any, ...]) -> list[tuple[str, bytes, bytes | None, bytes | None]]:
    """(action, path, cid, prev) of each op, its shape checked; deletes first, then by path."""
    ops = []
    seen: set[bytes] = set()
    for op in wire:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise ProofError("an op is not a map with a path", "bad_op")
        action, path, cid, prev = op.get("action"), op["path"].encode(), op.get("cid"), op.get("prev")
        if (cid is not None and not isinstance(cid, bytes)) or (
            prev is not None and not isinstance(prev, bytes)
        ):
            raise ProofError(f"op {path[:200]!r}: cid and prev must be CIDs", "bad_op")
        if action not in _SHAPES or _SHAPES[action] != (cid is not None, prev is not None):
            given = ("cid" if cid is not None else "no cid") + (", prev" if prev is not None else ", no prev")
            raise ProofError(f"op {path[:200]!r}: a {action!r} with {given}", "bad_op")
        if path in seen:
            raise ProofError(f"two ops at {path[:200]!r}", "bad_op")
        seen.add(path)
        ops.append((action, path, cid, prev))
    ops.sort(key=lambda op: (op[0] != "delete", op[1]))
    return ops


def prove(decoded: Decoded, did: str, rev: str | None) -> Proved:
    """Check ``decoded`` (a ``#commit`` or a ``#sync`` of ``did`` at ``rev``) as the module says."""
    car = decoded.blocks
    if not car:
        raise ProofError("the frame carries no blocks", "commit_mismatch")
    blocks = _blocks(car)
    is_commit = decoded.commit is not None
    root = decoded.root if is_commit else _car_root(car)
    commit = _commit(blocks, root, did, rev)
    if not is_commit:
        return Proved(commit, commit["data"], False)
    ops = _ops(decoded.wire_ops)
    tree = Tree(commit["data"], blocks, hashed=True)
    try:
        if decoded.prev_data is None:
            for action, path, cid, _ in ops:
                _held(action, path, cid, tree.get(path))
            return Proved(commit, commit["data"], False)
        # Inverting an op reads the value the tree holds at its path (paths are distinct: no
        # other op changes it), so the inversion is the path checks too, each path walked once.
        for action, path, cid, prev in ops:
            if action == "create":
                held = tree.remove(path)
            else:
                assert prev is not None
                held = tree.insert(path, prev)
            _held(action, path, cid, held)
        if tree.root() != decoded.prev_data:
            raise ProofError("the ops inverted do not give prevData", "prev_data_mismatch")
    except RecursionError:
        raise ProofError("the MST is deeper than any repository's", "incomplete_proof") from None
    return Proved(commit, commit["data"], True)


def _held(action: str, path: bytes, cid: bytes | None, held: bytes | None) -> None:
    """``held``, the tree's value at ``path``, must be the op's ``cid`` (None for a delete)."""
    if held != cid:
        what = "holds another record" if held is not None and cid is not None else (
            "holds no record" if cid is not None else "still holds a record")  # fmt: skip
        raise ProofError(f"the signed tree {what} at {path[:200]!r} ({action})", "op_not_in_tree")


def _text(cid: bytes) -> str:
    try:
        return str(libipld.encode_cid(cid))
    except ValueError:
        return cid.hex()
