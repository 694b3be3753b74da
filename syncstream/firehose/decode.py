"""Relay frames -> commits and ops, with libipld directly (no SDK models on the hot path).

A frame is two concatenated DAG-CBOR objects, a header ``{op, t}`` and a body. A ``#commit``
body carries its record blocks as a CAR slice; only the blocks that the wanted ops point to
are decoded. Anything else (other frame types, error frames, undecodable or truncated bytes,
missing blocks) becomes a counted reason, never an exception.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any

import libipld
import msgspec

from syncstream.registry.syntax import is_handle, is_tid
from syncstream.timestamps import is_seq

__all__ = [
    "AccountEvent",
    "Commit",
    "Decoded",
    "RepoOp",
    "car_blocks",
    "decode_frame",
    "json_model",
    "signed_commit",
    "uvarint",
]


class RepoOp(msgspec.Struct, frozen=True):
    action: str  # create | update | delete
    collection: str
    rkey: str
    cid: str | None
    record: dict[str, Any] | None  # the record in the AT Protocol JSON data model


class Commit(msgspec.Struct, frozen=True):
    seq: int | None  # None for records backfilled from a repository
    repo: str
    rev: str
    time: str
    ops: tuple[RepoOp, ...]
    source: str = "firehose"  # or "backfill"
    verified: bool | None = None  # its signature checked against its author's key; None: not checked


class AccountEvent(msgspec.Struct, frozen=True):
    """An ``#account``, ``#identity`` or ``#sync`` frame: what happened to an account."""

    event: str  # account | identity | sync
    did: str
    time: str
    active: bool | None = None  # account
    status: str | None = None  # account: takendown, suspended, deleted, deactivated, ...
    handle: str | None = None  # identity
    rev: str | None = None  # sync


class Decoded(msgspec.Struct, frozen=True):
    """One frame: its kind (``commit``, ``identity``, ..., ``error``, ``undecodable``), seq if any."""

    kind: str
    seq: int | None = None
    commit: Commit | None = None
    problems: tuple[str, ...] = ()  # per-op reasons for ops passed over (e.g. a missing block)
    name: str | None = None  # an error frame's error, an #info frame's name
    event: AccountEvent | None = None  # an #account, #identity or #sync frame's
    blocks: bytes | None = None  # a #commit's or #sync's CAR slice, holding its signed commit
    root: bytes | None = None  # a #commit's commit CID (a #sync's is its CAR's root)
    since: str | None = None  # a #commit's: the rev of the commit before it
    wire_ops: tuple[Any, ...] = ()  # a #commit's ops as the frame has them (for their proof)
    prev_data: bytes | None = None  # a #commit's: the MST root before it (Sync 1.1)


def signed_commit(decoded: Decoded) -> object:
    """The signed commit block of a ``#commit`` or ``#sync`` frame, decoded (None if absent)."""
    blocks, root = decoded.blocks, decoded.root
    if not blocks:
        return None
    try:
        if root is None:
            length, pos = uvarint(blocks, 0)
            roots = libipld.decode_dag_cbor(blocks[pos : pos + length]).get("roots")
            root = roots[0] if isinstance(roots, list) and roots and isinstance(roots[0], bytes) else None
            if root is None:
                return None
        span = car_blocks(blocks, {root}).get(root)
        return None if span is None else libipld.decode_dag_cbor(blocks[span[0] : span[1]])
    except (ValueError, IndexError, AttributeError, RecursionError):
        return None


def uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def car_blocks(car: bytes, wanted: set[bytes] | None = None) -> dict[bytes, tuple[int, int]]:
    """CID bytes -> (start, end) of the block's data within ``car`` (CAR v1 framing).

    With ``wanted``, stops as soon as those blocks are found. The common CIDv1/sha2-256 shape
    and one- or two-byte lengths are read inline: this loop runs for every block of every commit.
    """
    header_length, pos = uvarint(car, 0)
    pos += header_length
    blocks: dict[bytes, tuple[int, int]] = {}
    size = len(car)
    remaining = len(wanted) if wanted is not None else -1
    while pos < size:
        byte = car[pos]
        if byte < 0x80:
            length, pos = byte, pos + 1
        elif car[pos + 1] < 0x80:
            length, pos = (byte & 0x7F) | (car[pos + 1] << 7), pos + 2
        else:
            length, pos = uvarint(car, pos)
        end = pos + length
        if end > size:
            raise ValueError("truncated CAR block")
        if car[pos] == 0x01 and car[pos + 1] < 0x80 and car[pos + 2] == 0x12 and car[pos + 3] == 0x20:
            cid_end = pos + 36  # CIDv1, one-byte codec, sha2-256
        elif car[pos] == 0x12 and car[pos + 1] == 0x20:  # CIDv0: a bare sha2-256 multihash
            cid_end = pos + 34
        else:
            _, cursor = uvarint(car, pos)  # version
            _, cursor = uvarint(car, cursor)  # codec
            _, cursor = uvarint(car, cursor)  # multihash code
            digest_size, cursor = uvarint(car, cursor)
            cid_end = cursor + digest_size
        cid = car[pos:cid_end]
        if (wanted is None or cid in wanted) and cid not in blocks:  # a CAR may repeat a block
            blocks[cid] = (cid_end, end)
            remaining -= 1
            if remaining == 0:
                break
        pos = end
    return blocks


def _byte_string_header(length: int) -> bytes:
    if length < 24:
        return bytes((0x40 + length,))
    if length < 0x100:
        return bytes((0x58, length))
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    return b"\x5a" + length.to_bytes(4, "big")


def _is_link(value: bytes, raw: bytes) -> bool:
    # libipld decodes a CID link and a byte string alike, to bytes. In DAG-CBOR a link is
    # tag 42 over a byte string of 0x00 + the CID, so the raw block tells the two apart.
    return b"\xd8\x2a" + _byte_string_header(len(value) + 1) + b"\x00" + value in raw


def json_model(value: Any, raw: bytes) -> Any:
    """A decoded DAG-CBOR value in the AT Protocol JSON data model (``$link``, ``$bytes``)."""
    kind = type(value)
    if kind is dict:
        return {key: item if type(item) in _SCALARS else json_model(item, raw) for key, item in value.items()}
    if kind is list:
        return [item if type(item) in _SCALARS else json_model(item, raw) for item in value]
    if kind is bytes:
        if _is_link(value, raw):
            return {"$link": libipld.encode_cid(value)}
        return {"$bytes": b64encode(value).rstrip(b"=").decode("ascii")}
    return value


_SCALARS = frozenset({str, int, bool, type(None), float})
_OTHER_KINDS = {"#identity": "identity", "#account": "account", "#sync": "sync", "#info": "info"}


def decode_frame(frame: bytes, collections: frozenset[str] | None = None) -> Decoded:
    """Decode one relay frame; records are decoded only for ``collections`` (all when None)."""
    try:
        parts = libipld.decode_dag_cbor_multi(frame)
    except (ValueError, RecursionError):
        return Decoded("undecodable")
    if len(parts) != 2 or not isinstance(parts[0], dict) or not isinstance(parts[1], dict):
        return Decoded("undecodable")
    header, body = parts
    seq = body.get("seq")
    seq = seq if is_seq(seq) else None  # an int64, as every dataset stores it
    if header.get("op") == -1:
        return Decoded("error", seq, name=_text(body.get("error")))
    kind = header.get("t")
    if kind == "#commit":
        return _decode_commit(body, seq, collections)
    if kind == "#info":
        return Decoded("info", seq, name=_text(body.get("name")))
    name = _OTHER_KINDS.get(kind, "unknown") if isinstance(kind, str) else "unknown"
    if name in ("account", "identity", "sync"):
        return _decode_event(name, body, seq)
    return Decoded(name, seq)


def _decode_event(name: str, body: dict[str, Any], seq: int | None) -> Decoded:
    did, time = body.get("did"), body.get("time")
    if seq is None or not isinstance(did, str) or not isinstance(time, str):
        return Decoded(name, seq, problems=(f"malformed_{name}",))
    active = body.get("active")
    handle, rev = _text(body.get("handle")), _text(body.get("rev"))
    # Both are kept as rows' values: checked against their syntax like every other value.
    if handle is not None and not is_handle(handle):
        return Decoded(name, seq, problems=("invalid_handle",))
    if rev is not None and not is_tid(rev):
        return Decoded(name, seq, problems=("invalid_rev",))
    event = AccountEvent(
        name,
        did,
        time,
        active=active if isinstance(active, bool) else None,
        status=_text(body.get("status")),
        handle=handle,
        rev=rev,
    )
    blocks = body.get("blocks") if name == "sync" else None
    return Decoded(name, seq, event=event, blocks=blocks if isinstance(blocks, bytes) else None)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _record(cid: bytes, raw: bytes) -> tuple[str, dict[str, Any]] | str:
    """(CID text, record in the JSON data model) of a record block, or why there is none."""
    try:
        record = libipld.decode_dag_cbor(raw)
    except (ValueError, RecursionError):
        return "undecodable_record"
    if not isinstance(record, dict):
        return "undecodable_record"
    try:
        cid_text = libipld.encode_cid(cid)
    except ValueError:  # a CID of an unknown version or codec
        return "invalid_cid"
    try:
        return cid_text, json_model(record, raw)
    except (ValueError, RecursionError):  # a link that is no CID; nesting past the stack
        return "undecodable_record"


def _decode_commit(body: dict[str, Any], seq: int | None, collections: frozenset[str] | None) -> Decoded:
    repo, rev, time, ops, blocks = (body.get(k) for k in ("repo", "rev", "time", "ops", "blocks"))
    if (
        seq is None
        or not isinstance(repo, str)
        or not isinstance(rev, str)
        or not isinstance(time, str)
        or not isinstance(ops, list)
        or not isinstance(blocks, bytes)
    ):
        return Decoded("malformed_commit", seq)
    index: dict[bytes, tuple[int, int]] | None = None
    wanted = {
        op["cid"]
        for op in ops
        if isinstance(op, dict)
        and isinstance(op.get("cid"), bytes)
        and op.get("action") != "delete"
        and (collections is None or str(op.get("path", "")).partition("/")[0] in collections)
    }
    decoded: list[RepoOp] = []
    problems: list[str] = []
    for op in ops:
        if not isinstance(op, dict):
            problems.append("malformed_op")
            continue
        path, action, cid = op.get("path"), op.get("action"), op.get("cid")
        if not isinstance(path, str) or action not in ("create", "update", "delete"):
            problems.append("malformed_op")
            continue
        collection, _, rkey = path.partition("/")
        if collections is not None and collection not in collections:
            decoded.append(RepoOp(action, collection, rkey, None, None))
            continue
        if action == "delete":
            decoded.append(RepoOp(action, collection, rkey, None, None))
            continue
        if not isinstance(cid, bytes):
            problems.append("malformed_op")
            continue
        if index is None:
            try:
                index = car_blocks(blocks, wanted) if blocks else {}
            except (ValueError, IndexError):
                index = {}
                problems.append("undecodable_car")
        span = index.get(cid)
        if span is None:
            problems.append("missing_block")
            continue
        record = _record(cid, blocks[span[0] : span[1]])
        if isinstance(record, str):
            problems.append(record)
            continue
        decoded.append(RepoOp(action, collection, rkey, *record))
    root, since, prev_data = body.get("commit"), body.get("since"), body.get("prevData")
    return Decoded(
        "commit",
        seq,
        Commit(seq, repo, rev, time, tuple(decoded)),
        tuple(problems),
        blocks=blocks,
        root=root if isinstance(root, bytes) else None,
        since=since if isinstance(since, str) else None,
        wire_ops=tuple(ops),
        prev_data=prev_data if isinstance(prev_data, bytes) else None,
    )
