"""Rehearsal repositories: a signed commit over a real MST (keys layered by the leading zeros of
their SHA-256, two bits a layer, as the repository spec says), of posts and likes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import libipld

from syncstream.firehose.encode import cid_for, uvarint
from syncstream.servers.keys import REHEARSAL_SEED, SigningKey, sign_commit

__all__ = ["build_repo", "write_repo"]

TIME = "2026-07-04T14:38:07.517Z"


def _layer(key: bytes) -> int:
    digest = hashlib.sha256(key).digest()
    zeros = 0
    for byte in digest:
        if byte == 0:
            zeros += 8
            continue
        zeros += 8 - byte.bit_length()
        break
    return zeros // 2


def _records(did: str, count: int) -> Iterator[tuple[bytes, bytes]]:
    for i in range(count):
        if i % 2:
            collection, record = "app.bsky.feed.like", {
                "$type": "app.bsky.feed.like", "createdAt": TIME,
                "subject": {"uri": f"at://{did}/app.bsky.feed.post/3k{i - 1:011d}", "cid": "bafyreia"},
            }  # fmt: skip
        else:
            collection = "app.bsky.feed.post"
            record = {"$type": "app.bsky.feed.post", "text": f"post {i}", "createdAt": TIME}
        yield f"{collection}/3k{i:011d}".encode(), libipld.encode_dag_cbor(record)


def _node(items: list[tuple[bytes, bytes, int]], layer: int, out: list[tuple[bytes, bytes]]) -> bytes | None:
    """The MST node at ``layer`` over ``items`` (sorted; none above ``layer``), its blocks in ``out``."""
    if not items:
        return None
    tops = [index for index, item in enumerate(items) if item[2] == layer]
    if not tops:
        left = _node(items, layer - 1, out)
        block = libipld.encode_dag_cbor({"l": left, "e": []})
    else:
        left = _node(items[: tops[0]], layer - 1, out)
        entries = []
        previous = b""
        for position, index in enumerate(tops):
            key, value, _ = items[index]
            end = tops[position + 1] if position + 1 < len(tops) else len(items)
            right = _node(items[index + 1 : end], layer - 1, out)
            prefix = 0
            while prefix < min(len(key), len(previous)) and key[prefix] == previous[prefix]:
                prefix += 1
            entries.append({"p": prefix, "k": key[prefix:], "v": value, "t": right})
            previous = key
        block = libipld.encode_dag_cbor({"l": left, "e": entries})
    cid = cid_for(block)
    out.append((cid, block))
    return cid


def _blocks(did: str, records: int, key: SigningKey) -> Iterator[tuple[bytes, bytes]]:
    """The commit first, then the MST's nodes and the records."""
    items, data = [], []
    for path, block in _records(did, records):
        cid = cid_for(block)
        data.append((cid, block))
        items.append((path, cid, _layer(path)))
    items.sort()
    nodes: list[tuple[bytes, bytes]] = []
    top = max((item[2] for item in items), default=0)
    root = _node(items, top, nodes)
    if root is None:
        empty = libipld.encode_dag_cbor({"l": None, "e": []})
        root = cid_for(empty)
        nodes.append((root, empty))
    commit = libipld.encode_dag_cbor(
        sign_commit({"did": did, "version": 3, "data": root, "rev": "3mptbypluud2a", "prev": None}, key)
    )
    yield cid_for(commit), commit
    yield from reversed(nodes)
    yield from data


def write_repo(path: Path, did: str, records: int, key: SigningKey | None = None) -> int:
    """Write the repository CAR to ``path``; its size."""
    blocks = _blocks(did, records, key if key is not None else SigningKey(REHEARSAL_SEED))
    first = next(blocks)
    header = libipld.encode_dag_cbor({"roots": [first[0]], "version": 1})
    size = 0
    with open(path, "wb") as out:
        for part in (uvarint(len(header)), header):
            size += out.write(part)
        for cid, block in (first, *blocks):
            size += out.write(uvarint(len(cid) + len(block)) + cid + block)
    return size


def build_repo(did: str, records: int, key: SigningKey | None = None) -> bytes:
    """The repository CAR of ``records`` posts and likes, signed by ``key`` (default: the
    rehearsal key, ``SigningKey(REHEARSAL_SEED)``, which the loopback PDS publishes)."""
    blocks = list(_blocks(did, records, key if key is not None else SigningKey(REHEARSAL_SEED)))
    header = libipld.encode_dag_cbor({"roots": [blocks[0][0]], "version": 1})
    parts = [uvarint(len(header)), header]
    for cid, block in blocks:
        parts.append(uvarint(len(cid) + len(block)) + cid + block)
    return b"".join(parts)
