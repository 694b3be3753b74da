"""An MST node (atproto repository v3) as a commit's proof reads and writes it: the keys'
heights, the entries' prefix compression, a node decoded from its block (its keys unpacked
only when needed) and encoded again. ``syncstream.firehose.mst`` is the tree made of them."""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from typing import Any

import libipld

from syncstream.errors import ProofError

__all__ = [
    "DAG_CBOR_SHA256",
    "MAX_KEY_BYTES",
    "Node",
    "block",
    "common_prefix",
    "dag_cbor_cid",
    "encode",
    "key_height",
    "parse",
]

MAX_KEY_BYTES = 1024  # the repository spec's bound on a key
DAG_CBOR_SHA256 = b"\x01\x71\x12\x20"
_LINK_TYPES = frozenset((bytes, type(None)))  # a subtree's link: a CID or null


def key_height(key: bytes) -> int:
    """The layer of ``key``: its SHA-256's leading zero bits, two at a time."""
    digest = hashlib.sha256(key).digest()
    if digest[0] >= 0x40:  # three keys in four: layer 0, without the 256-bit integer
        return 0
    return (256 - int.from_bytes(digest, "big").bit_length()) // 2


def common_prefix(left: bytes, right: bytes) -> int:
    """The length of the prefix two keys share (their first difference found by XOR, in C:
    this runs for every entry of every node encoded)."""
    size = min(len(left), len(right))
    head, other = left[:size], right[:size]
    if head == other:
        return size
    differ = int.from_bytes(head, "big") ^ int.from_bytes(other, "big")
    return size - 1 - (differ.bit_length() - 1) // 8


def dag_cbor_cid(data: bytes) -> bytes:
    """The CIDv1 (dag-cbor, sha2-256) of a block, as raw bytes."""
    return DAG_CBOR_SHA256 + hashlib.sha256(data).digest()


class Node:
    """One node: ``left`` then, for each key, its value and the subtree after it (``rights``).
    A subtree is a ``Node``, the CID of one not decoded, or None. ``cid`` is None once the node
    has changed (computed again by ``Tree.root``).

    ``wire`` holds each entry as its block had it, or None where its key, prefix or value
    changed: an entry kept is not encoded afresh. A node read from a block is searched on its
    wire entries (``locate``), its keys and values unpacked only when it changes beyond a
    subtree's link (most nodes of a commit's path only get a new link: unpacking each would be
    most of the cost of inverting a commit).

    ``touched``, for a node read from a block whose entries have not changed since, is the set
    of gaps whose subtree may have (a decoded or changed one): encoding it again replaces only
    those links and keeps every other entry as decoded, rather than visiting each entry. None:
    an entry was added, removed or changed, or the node was made, not read."""

    __slots__ = ("_keys", "_values", "cid", "height", "left", "rights", "touched", "wire")

    def __init__(  # noqa: PLR0917 (a node is these lists, in this order)
        self,
        height: int,
        left: Node | bytes | None = None,
        keys: list[bytes] | None = None,
        values: list[bytes] | None = None,
        rights: list[Node | bytes | None] | None = None,
        wire: list[dict[str, Any] | None] | None = None,
    ) -> None:
        self.height = height
        self.left = left
        self.rights = rights if rights is not None else []
        self._keys = keys if keys is not None or wire is not None else []
        self._values = values if values is not None or wire is not None else []
        self.wire: list[dict[str, Any] | None] = wire if wire is not None else [None] * len(self.rights)
        self.cid: bytes | None = None
        self.touched: set[int] | None = None

    @property
    def keys(self) -> list[bytes]:
        if self._keys is None:
            self._unpack()
        assert self._keys is not None
        return self._keys

    @property
    def values(self) -> list[bytes]:
        if self._values is None:
            self._unpack()
        assert self._values is not None
        return self._values

    def _unpack(self) -> None:
        """Every key and value from the wire entries, checked (types, prefixes, order, length)."""
        try:
            prefixes = [item["p"] for item in self.wire]  # type: ignore[index]
            suffixes = [item["k"] for item in self.wire]  # type: ignore[index]
            values = [item["v"] for item in self.wire]  # type: ignore[index]
        except (TypeError, KeyError):
            raise ProofError("an MST entry is not a map with its key and value") from None
        if (
            not {type(p) for p in prefixes} <= {int}
            or not {type(k) for k in suffixes} <= {bytes}
            or not {type(v) for v in values} <= {bytes}
        ):
            raise ProofError("an MST entry's key, prefix or value is of another type")
        keys: list[bytes] = []
        previous = b""
        for prefix, suffix in zip(prefixes, suffixes, strict=True):
            if prefix < 0 or prefix > len(previous):
                raise ProofError("an MST entry's prefix is longer than the key before it")
            key = previous[:prefix] + suffix
            if key <= previous:
                raise ProofError("an MST node's keys are empty or out of order")
            keys.append(key)
            previous = key
        if keys and max(map(len, keys)) > MAX_KEY_BYTES:
            raise ProofError("an MST key is longer than 1024 bytes")
        self._keys, self._values = keys, values

    def locate(self, key: bytes) -> tuple[int, bool]:
        """Where ``key`` is or would go among the keys, and whether it is there."""
        if self._keys is not None:
            index = bisect_left(self._keys, key)
            return index, index < len(self._keys) and self._keys[index] == key
        previous = b""
        try:  # the wire entries read only as far as the key (each one read is checked)
            for index, item in enumerate(self.wire):
                prefix, suffix = item["p"], item["k"]  # type: ignore[index]
                if type(prefix) is not int or type(suffix) is not bytes or not 0 <= prefix <= len(previous):
                    raise ProofError("an MST entry's key or prefix is malformed")
                current = previous[:prefix] + suffix
                if current <= previous:
                    raise ProofError("an MST node's keys are empty or out of order")
                if current >= key:
                    return index, current == key
                previous = current
        except (TypeError, KeyError):
            raise ProofError("an MST entry is not a map with its key and value") from None
        return len(self.wire), False

    def value_at(self, index: int) -> bytes:
        if self._values is not None:
            return self._values[index]
        value = self.wire[index]["v"]  # type: ignore[index]
        if type(value) is not bytes:
            raise ProofError("an MST entry's value is not a CID")
        return value

    def empty(self) -> bool:
        return not self.wire and self.left is None

    def gap(self, index: int) -> Node | bytes | None:
        """The subtree before key ``index`` (after the last key for ``len(keys)``)."""
        return self.left if index == 0 else self.rights[index - 1]

    def set_gap(self, index: int, sub: Node | bytes | None) -> None:
        if self.touched is not None:
            self.touched.add(index)
        if index == 0:
            self.left = sub
        else:
            self.rights[index - 1] = sub


def _cid_of(sub: Node | bytes | None) -> bytes | None:
    if sub is None or isinstance(sub, bytes):
        return sub
    return encode(sub)


def encode(node: Node) -> bytes:
    """The node's CID, encoding it (and its changed subtrees) when it changed."""
    if node.cid is None:
        node.cid = dag_cbor_cid(block(node))
    return node.cid


def block(node: Node) -> bytes:
    """The node's DAG-CBOR block (its changed subtrees encoded first, for their CIDs)."""
    if node.touched is not None:  # its entries as read: only the links of touched gaps can differ
        entries = node.wire
        for index in node.touched:
            if index == 0:
                continue  # ``left`` is encoded below
            link = _cid_of(node.rights[index - 1])
            wire = entries[index - 1]
            assert wire is not None
            if wire.get("t") != link:
                if entries is node.wire:
                    entries = list(entries)
                entries[index - 1] = {**wire, "t": link}
        return libipld.encode_dag_cbor({"e": entries, "l": _cid_of(node.left)})
    entries = []
    for index, (right, wire) in enumerate(zip(node.rights, node.wire, strict=True)):
        link = _cid_of(right)
        if wire is not None:
            entries.append(wire if wire.get("t") == link else {**wire, "t": link})
            continue
        key, previous = node.keys[index], node.keys[index - 1] if index else b""
        prefix = common_prefix(previous, key)
        entries.append({"k": key[prefix:], "p": prefix, "t": link, "v": node.values[index]})
    return libipld.encode_dag_cbor({"e": entries, "l": _cid_of(node.left)})


def parse(value: Any, height: int | None) -> Node:
    """A decoded node block as a ``Node`` (its keys unpacked when needed); ``height`` is its
    parent's less one (None: the root)."""
    if not isinstance(value, dict):
        raise ProofError("an MST node is not a map")
    left, items = value.get("l"), value.get("e")
    if not isinstance(items, list) or (left is not None and not isinstance(left, bytes)):
        raise ProofError("an MST node lacks its entries")
    try:
        rights: list[Node | bytes | None] = [item.get("t") for item in items]
        first = items[0]["k"] if items and items[0]["p"] == 0 else None
    except (AttributeError, KeyError, TypeError):
        raise ProofError("an MST entry is not a map with its key and value") from None
    if not {type(r) for r in rights} <= _LINK_TYPES or (items and type(first) is not bytes):
        raise ProofError("an MST node's first key or a subtree is malformed")
    if items:
        assert isinstance(first, bytes)
        found = key_height(first)
        if height is not None and found != height:
            raise ProofError(f"an MST node of layer {found} sits at layer {height}")
        height = found
    elif height is None:
        if left is not None:
            raise ProofError("the MST's root holds no key, only a subtree (it is not trimmed)")
        height = 0
    if height < 0 or (height == 0 and (left is not None or rights.count(None) != len(rights))):
        raise ProofError("an MST node of layer 0 has a subtree")
    node = Node.__new__(Node)  # its slots set directly: this runs for every node of every path
    node.height, node.left, node.rights, node.wire = height, left, rights, items
    node._keys = node._values = node.cid = None
    node.touched = set()
    return node
