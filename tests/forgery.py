"""Real relay frames altered as an adversarial relay would alter them: a frame's body, its CAR
slice rebuilt around other blocks, its ops changed, its commit re-signed or not."""

from __future__ import annotations

from typing import Any

import libipld

from syncstream.firehose.decode import car_blocks, uvarint
from syncstream.firehose.encode import cid_for, encode_car, encode_frame

__all__ = ["body_of", "car_of", "frame_of", "post_op", "with_body"]


def body_of(frame: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    header, body = libipld.decode_dag_cbor_multi(frame)
    return header, body


def car_of(body: dict[str, Any]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The CAR slice's root and its blocks, in order."""
    car: bytes = body["blocks"]
    length, pos = uvarint(car, 0)
    root = libipld.decode_dag_cbor(car[pos : pos + length])["roots"][0]
    return root, [(cid, car[start:end]) for cid, (start, end) in car_blocks(car).items()]


def frame_of(
    header: dict[str, Any], body: dict[str, Any], root: bytes, blocks: list[tuple[bytes, bytes]]
) -> bytes:
    return encode_frame(header, {**body, "blocks": encode_car([root], blocks)})


def with_body(frame: bytes, **changes: Any) -> bytes:
    header, body = body_of(frame)
    return encode_frame(header, {**body, **changes})


def post_op(body: dict[str, Any]) -> int:
    """The index of the frame's first post create."""
    return next(
        i for i, op in enumerate(body["ops"])
        if op["action"] == "create" and op["path"].startswith("app.bsky.feed.post/")
    )  # fmt: skip


def record_block(text: str) -> tuple[bytes, bytes]:
    block = libipld.encode_dag_cbor(
        {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-07-04T14:38:07.517Z"}
    )
    return cid_for(block), block


_BASE32_SORTABLE = "234567abcdefghijklmnopqrstuvwxyz"


def tid(seconds: float, clock_id: int = 0) -> str:
    """The TID of a time (seconds since the epoch): a rev as a PDS makes one."""
    value = (int(seconds * 1_000_000) << 10) | clock_id
    return "".join(_BASE32_SORTABLE[(value >> (5 * (12 - i))) & 31] for i in range(13))


def resigned(frame: bytes, change: Any) -> bytes:
    """The frame with its commit block replaced by ``change(commit)`` (a new block, a new CID,
    the frame's ``commit`` and the CAR's root pointing at it: every hash holds)."""
    header, body = body_of(frame)
    root, blocks = car_of(body)
    commit = change(libipld.decode_dag_cbor(dict(blocks)[root]))
    block = libipld.encode_dag_cbor(commit)
    new = cid_for(block)
    rebuilt = [(new, block) if cid == root else (cid, data) for cid, data in blocks]
    return frame_of(header, {**body, "commit": new}, new, rebuilt)


def badly_signed(frame: bytes) -> bytes:
    """The frame with one bit of its commit's signature flipped, its hashes made to hold."""

    def flip(commit: dict[str, Any]) -> dict[str, Any]:
        sig = commit["sig"]
        return {**commit, "sig": sig[:10] + bytes((sig[10] ^ 1,)) + sig[11:]}

    return resigned(frame, flip)
