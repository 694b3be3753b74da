"""A repository's Merkle Search Tree (atproto repository v3), partial or whole.

A key's height is the number of leading zero bits of its SHA-256, counted two at a time (each
layer holds a quarter of the keys of the one below). A node holds the keys of one height in
order, a subtree before them (``l``) and one after each (``t``); each entry stores its key as
the length of the prefix it shares with the key before it (``p``) and the rest (``k``), and its
value's CID (``v``) (``syncstream.firehose.mst_node``).

A ``Tree`` is read from its root CID and a source of blocks (a ``#commit``'s CAR slice holds
only the nodes its ops touch): a node is decoded when an operation first reaches it, its bytes
hashed against its CID (sha2-256); a subtree whose block is absent stays a CID and is used as
one, and an operation that has to look inside it raises ``ProofError`` (the proof does not
cover it). ``get`` looks a key up; ``insert`` and ``remove`` change the tree as the author's
would have, so that ``root`` gives the root CID of the changed tree: applying a commit's ops in
reverse this way gives the root of the tree before it (``prevData``).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

import libipld

from syncstream.errors import ProofError
from syncstream.firehose.mst_node import (
    DAG_CBOR_SHA256,
    MAX_KEY_BYTES,
    Node,
    block,
    common_prefix,
    dag_cbor_cid,
    encode,
    key_height,
    parse,
)

__all__ = ["MAX_KEY_BYTES", "Node", "Tree", "common_prefix", "dag_cbor_cid", "key_height"]


class Tree:
    """The tree under ``root`` (a CID), its nodes read from ``blocks`` (CID -> bytes) as needed."""

    def __init__(self, root: bytes | Node, blocks: Mapping[bytes, bytes], *, hashed: bool = False) -> None:
        """``hashed``: every block of ``blocks`` was checked against its CID already."""
        self._blocks = blocks
        self._hashed = hashed
        self._root: Node | bytes = root

    @classmethod
    def empty(cls) -> Tree:
        return cls(Node(0), {})

    def _load(self, cid: bytes, height: int | None) -> Node:
        raw = self._blocks.get(cid)
        if raw is None:
            raise ProofError(f"the proof lacks MST node {_text(cid)}")
        if cid[:4] != DAG_CBOR_SHA256 or not (self._hashed or hashlib.sha256(raw).digest() == cid[4:]):
            raise ProofError(f"MST node {_text(cid)} does not hash to its CID")
        try:
            value = libipld.decode_dag_cbor(raw)
        except (ValueError, RecursionError) as error:
            raise ProofError(f"MST node {_text(cid)} does not decode: {error}") from None
        node = parse(value, height)
        node.cid = cid
        return node

    def _top(self) -> Node:
        if isinstance(self._root, bytes):
            self._root = self._load(self._root, None)
        return self._root

    def _child(self, node: Node, index: int) -> Node | None:
        """The subtree at gap ``index`` of ``node``, decoded (and kept decoded)."""
        sub = node.left if index == 0 else node.rights[index - 1]
        if isinstance(sub, bytes):
            if node.height == 0:
                raise ProofError("an MST node of layer 0 has a subtree")
            sub = self._load(sub, node.height - 1)
            node.set_gap(index, sub)
        return sub

    def root(self) -> bytes:
        """The root CID (the tree's nodes that changed encoded again)."""
        return self._root if isinstance(self._root, bytes) else encode(self._root)

    def blocks(self) -> dict[bytes, bytes]:
        """CID -> block of every node decoded or made (those only a CID are left out): what a
        commit's CAR slice carries of its tree, for a tree built whole."""
        found: dict[bytes, bytes] = {}
        stack = [self._root] if isinstance(self._root, Node) else []
        while stack:
            node = stack.pop()
            data = block(node)
            found[dag_cbor_cid(data)] = data
            stack += [sub for sub in (node.left, *node.rights) if isinstance(sub, Node)]
        return found

    def get(self, key: bytes) -> bytes | None:
        """The value at ``key``, or None when the tree does not hold it."""
        height = key_height(key)
        node: Node | None = self._top()
        while node is not None:
            if height > node.height:
                return None
            index, found = node.locate(key)
            if height == node.height:
                return node.value_at(index) if found else None
            if found:
                return None
            node = self._child(node, index)
        return None

    def insert(self, key: bytes, value: bytes) -> bytes | None:
        """Set ``key`` to ``value``; the value it had, or None."""
        _check_key(key)
        node, previous = self._insert(self._top(), key, value, key_height(key))
        self._root = node
        return previous

    def remove(self, key: bytes) -> bytes | None:
        """Remove ``key``; the value it had, or None (and the tree unchanged)."""
        _check_key(key)
        node, previous = self._remove(self._top(), key, key_height(key))
        top: Node | bytes = node
        # a root left with no key but a subtree: the subtree is the root (the tree is trimmed)
        while isinstance(top, Node) and not top.wire and top.left is not None:
            top = top.left
        self._root = top if not (isinstance(top, Node) and top.empty()) else Node(0)
        return previous

    def _insert(self, node: Node, key: bytes, value: bytes, height: int) -> tuple[Node, bytes | None]:
        if height > node.height:
            if node.empty():
                return self._insert(Node(height), key, value, height)
            return self._insert(Node(node.height + 1, left=node), key, value, height)
        index, found = node.locate(key)
        if height < node.height:
            if found:
                raise ProofError("an MST key sits above its layer")
            child = self._child(node, index)
            child, previous = self._insert(child or Node(node.height - 1), key, value, height)
            if previous != value:
                node.set_gap(index, child)
                node.cid = None
            return node, previous
        if found:
            previous = node.values[index]
            if previous != value:
                node.values[index] = value
                node.wire[index] = None
                node.cid = node.touched = None
            return node, previous
        child = self._child(node, index)
        low, high = self._split(child, key) if child is not None else (None, None)
        node.set_gap(index, low)
        node.keys.insert(index, key)
        node.values.insert(index, value)
        node.rights.insert(index, high)
        node.wire.insert(index, None)
        if index + 1 < len(node.wire):
            node.wire[index + 1] = None  # its prefix is against the new key now
        node.cid = node.touched = None
        return node, None

    def _split(self, node: Node, key: bytes) -> tuple[Node | bytes | None, Node | bytes | None]:
        """``node``'s subtree cut at ``key`` (which it does not hold): the keys below, above."""
        index = bisect_left(node.keys, key)
        child = self._child(node, index)
        low, high = self._split(child, key) if child is not None else (None, None)
        if index == len(node.keys) and high is None:
            return node, None  # all of it is below: unchanged
        if index == 0 and low is None:
            return None, node  # all of it is above: unchanged
        if index == 0:
            below = Node(node.height, low)
        else:
            rights = [*node.rights[: index - 1], low]
            below = Node(
                node.height, node.left, node.keys[:index], node.values[:index], rights, node.wire[:index]
            )
        # the first key above has no prefix
        wire: list[dict[str, Any] | None] = [None, *node.wire[index + 1 :]] if index < len(node.keys) else []
        above = Node(node.height, high, node.keys[index:], node.values[index:], node.rights[index:], wire)
        return (None if below.empty() else below), (None if above.empty() else above)

    def _remove(self, node: Node, key: bytes, height: int) -> tuple[Node, bytes | None]:
        if height > node.height:
            return node, None
        index, found = node.locate(key)
        if height < node.height:
            if found:
                return node, None
            child = self._child(node, index)
            if child is None:
                return node, None
            child, previous = self._remove(child, key, height)
            if previous is not None:
                node.set_gap(index, None if child.empty() else child)
                node.cid = None
            return node, previous
        if not found:
            return node, None
        previous = node.values[index]
        merged = self._merge(node, index)
        del node.keys[index], node.values[index], node.rights[index], node.wire[index]
        if index < len(node.wire):
            node.wire[index] = None  # its prefix was against the key removed
        node.cid = node.touched = None
        node.set_gap(index, merged)
        return node, previous

    def _merge(self, parent: Node, index: int) -> Node | bytes | None:
        """The subtrees on either side of key ``index`` of ``parent`` (being removed), as one."""
        left, right = parent.gap(index), parent.rights[index]
        if left is None or right is None:
            return right if left is None else left
        low = self._child(parent, index)
        high = self._child(parent, index + 1)
        assert low is not None and high is not None
        return self._join(low, high)

    def _join(self, low: Node, high: Node) -> Node:
        """Two adjacent subtrees of one layer as one node (their facing edges joined below)."""
        last = len(low.keys)
        edge_low, edge_high = low.gap(last), high.left
        if edge_low is None or edge_high is None:
            middle = edge_high if edge_low is None else edge_low
        else:
            lower = self._child(low, last)
            upper = self._child(high, 0)
            assert lower is not None and upper is not None
            middle = self._join(lower, upper)
        if last == 0:
            return Node(
                low.height, middle, list(high.keys), list(high.values), list(high.rights), list(high.wire)
            )
        rights = [*low.rights[:-1], middle, *high.rights]
        wire: list[dict[str, Any] | None] = [
            *low.wire,
            *([None, *high.wire[1:]] if high.keys else []),
        ]  # high's first: a new prefix
        return Node(low.height, low.left, low.keys + high.keys, low.values + high.values, rights, wire)


def _check_key(key: bytes) -> None:
    if not key or len(key) > MAX_KEY_BYTES:
        raise ProofError("an MST key is empty or longer than 1024 bytes")


def _text(cid: bytes) -> str:
    try:
        return str(libipld.encode_cid(cid))
    except ValueError:
        return cid.hex()
