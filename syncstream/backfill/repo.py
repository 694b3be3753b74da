"""A repository export (``com.atproto.sync.getRepo``'s CAR) -> its records, by the MST.

The CAR is read where it lies (a file, read block by block with ``pread``: not mapped, whose
pages would count as the process's memory; or bytes) and its blocks indexed in SQLite (on disk
beside the file), so memory does not grow with the repository. The walk starts at the
signed commit (the CAR's root), follows the MST from the commit's ``data``, iteratively, and
trusts nothing: each node is visited once (a node reached twice, a loop or a shared subtree,
refuses the CAR), keys must come in strictly increasing order, no more nodes are visited than
the CAR has blocks, and every block read is checked against its CID (sha2-256). ``check``
walks the whole tree first, so a CAR that fails is refused before any of its records is used;
``records`` then walks it again, decoding one record at a time, each block hashed again as it
is read (what is written is what the signed tree names, whatever happened to the file since).
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import libipld

from syncstream.errors import RepoError
from syncstream.firehose.decode import car_blocks, json_model, uvarint

__all__ = ["Repo", "RepoFile", "RepoRecord", "read_repo", "repo_did"]

_INSERT_BATCH = 10_000
_MAX_KEY = 1024  # bytes: a repository key is a collection NSID and an rkey


class RepoRecord(NamedTuple):
    collection: str
    rkey: str
    cid: str
    record: dict[str, Any]  # in the AT Protocol JSON data model


class Repo(NamedTuple):
    did: str
    rev: str
    records: list[RepoRecord]


def _cid_text(cid: bytes) -> str:
    try:
        return str(libipld.encode_cid(cid))
    except ValueError:
        return cid.hex()


class RepoFile:
    """A repository CAR and the index of its blocks. ``scratch``: a directory for the index
    (None: in memory, for small CARs held as bytes)."""

    def __init__(self, car: Path | bytes, *, scratch: Path | None = None) -> None:
        self._file: BinaryIO | None = None
        self._bytes: bytes | None = None
        if isinstance(car, Path):
            self._file = open(car, "rb", buffering=1 << 20)  # noqa: SIM115 (closed by close())
        else:
            self._bytes = car
        index = ":memory:" if scratch is None else str(scratch / "index.sqlite")
        self._db = sqlite3.connect(index, isolation_level=None)
        self._db.executescript(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; "
            "CREATE TABLE IF NOT EXISTS blocks (cid BLOB PRIMARY KEY, start INTEGER, end INTEGER,"
            " seen INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID; DELETE FROM blocks;"
        )
        self.problems: dict[str, int] = {}  # records passed over, by reason
        try:
            root = self._index()
            self.commit = self._node(root, "the commit")
        except BaseException:
            self.close()
            raise
        did, rev, data = self.commit.get("did"), self.commit.get("rev"), self.commit.get("data")
        if not isinstance(did, str) or not isinstance(rev, str) or not isinstance(data, bytes):
            self.close()
            raise RepoError("the root is not a repository commit (did, rev, data)")
        self.did, self.rev, self.data = did, rev, data  # data: the MST root the commit signs

    def _read(self, start: int, end: int) -> bytes:
        if self._bytes is not None:
            return self._bytes[start:end]
        assert self._file is not None
        return os.pread(self._file.fileno(), end - start, start)

    def _index(self) -> bytes:
        """Scan the CAR once, sequentially, indexing each block; the root's CID."""
        reader = self._file if self._file is not None else io.BytesIO(self._bytes or b"")
        try:
            length = _varint(reader)
            header = libipld.decode_dag_cbor(reader.read(length or 0))
        except ValueError:
            raise RepoError("the CAR header is truncated or does not decode") from None
        roots = header.get("roots") if isinstance(header, dict) else None
        if not isinstance(roots, list) or len(roots) != 1 or not isinstance(roots[0], bytes):
            raise RepoError("the CAR has no single root (the signed commit)")
        batch: list[tuple[bytes, int, int]] = []
        self.blocks = last_end = 0
        try:
            while (length := _varint(reader)) is not None:
                start = reader.tell()
                cid = reader.read(36)
                if length < 36 or len(cid) < 36:
                    raise RepoError("the CAR is truncated inside a block")
                # CIDv1, one-byte codec, sha2-256: every block a repository has; others are not indexed
                if cid[0] == 0x01 and cid[2:4] == b"\x12\x20":
                    batch.append((cid, start + 36, start + length))
                    self.blocks += 1
                    if len(batch) >= _INSERT_BATCH:
                        self._insert(batch)
                last_end = start + length
                reader.seek(last_end)
            if last_end > reader.seek(0, io.SEEK_END):
                raise RepoError("the CAR is truncated inside a block")
        except ValueError as error:
            raise RepoError(f"the CAR does not parse: {error}") from None
        self._insert(batch)
        return roots[0]

    def _insert(self, batch: list[tuple[bytes, int, int]]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO blocks (cid, start, end) VALUES (?, ?, ?)", batch)
        batch.clear()

    def raw(self, cid: bytes, *, check: bool = True) -> bytes:
        row = self._db.execute("SELECT start, end FROM blocks WHERE cid = ?", (cid,)).fetchone()
        if row is None:
            raise RepoError(f"block {_cid_text(cid)} is missing")
        data = self._read(row[0], row[1])
        if len(data) != row[1] - row[0]:
            raise RepoError(f"block {_cid_text(cid)} is truncated")
        if check and hashlib.sha256(data).digest() != cid[4:]:
            raise RepoError(f"block {_cid_text(cid)} does not match its CID")
        return data

    def _node(self, cid: bytes, what: str) -> dict[str, Any]:
        if len(cid) != 36 or cid[0] != 0x01 or cid[2:4] != b"\x12\x20":
            raise RepoError(f"{what} {_cid_text(cid)} is not a CIDv1 sha2-256")
        try:
            value = libipld.decode_dag_cbor(self.raw(cid))
        except (ValueError, RecursionError) as error:
            raise RepoError(f"{what} {_cid_text(cid)} does not decode: {error}") from None
        if not isinstance(value, dict):
            raise RepoError(f"{what} {_cid_text(cid)} is not a map")
        return value

    def _visit(self, cid: bytes) -> dict[str, Any]:
        changed = self._db.execute("UPDATE blocks SET seen = 1 WHERE cid = ? AND seen = 0", (cid,)).rowcount
        if changed == 0:
            exists = self._db.execute("SELECT 1 FROM blocks WHERE cid = ?", (cid,)).fetchone()
            if exists:
                raise RepoError(f"the MST reaches node {_cid_text(cid)} twice (a loop or a shared subtree)")
        return self._node(cid, "MST node")

    def _walk(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value CID) in key order, each node once, at most one node per block."""
        self._db.execute("UPDATE blocks SET seen = 0 WHERE seen = 1")
        budget = self.blocks
        last = b""
        stack: list[tuple[bytes, bytes | None]] = [(b"", self.data)]  # (key, None) or (b"", node)
        while stack:
            key, target = stack.pop()
            if key:
                if key <= last:
                    raise RepoError(f"the MST's keys are out of order at {key[:200]!r}")
                last = key
                assert target is not None
                yield key, target
                continue
            budget -= 1
            if budget < 0 or target is None:
                raise RepoError("the MST has more nodes than the CAR has blocks")
            node = self._visit(target)
            stack.extend(reversed(_entries(node, target)))

    def check(self) -> int:
        """Walk the whole MST, checking its shape, order and every block's CID; the number of
        records. Nothing of a CAR that fails here is used."""
        records = 0
        for _, value in self._walk():
            self.raw(value)
            records += 1
        return records

    def records(self) -> Iterator[RepoRecord]:
        """The records, in key order (call ``check`` first), each at its path in the signed tree
        and its block hashed against its CID as it is read; an undecodable one is counted in
        ``problems`` and passed over, as a live one would be."""
        for key, value in self._walk():
            collection, _, rkey = key.decode(errors="replace").partition("/")
            raw = self.raw(value)  # hashed again as it is written: the bytes written are the ones signed
            try:
                record = json_model(libipld.decode_dag_cbor(raw), raw)
            except (ValueError, RecursionError):
                record = None
            if not isinstance(record, dict):
                self.problems["undecodable_record"] = self.problems.get("undecodable_record", 0) + 1
                continue
            yield RepoRecord(collection, rkey, _cid_text(value), record)

    def close(self) -> None:
        self._db.close()
        if self._file is not None:
            self._file.close()


def _varint(reader: BinaryIO) -> int | None:
    """The next unsigned varint, or None at the end of the stream."""
    value = shift = 0
    while True:
        byte = reader.read(1)
        if not byte:
            if shift:
                raise ValueError("truncated varint")
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _entries(node: dict[str, Any], cid: bytes) -> list[tuple[bytes, bytes | None]]:
    """A node's items in key order: its left subtree, then each entry's key and right subtree
    (as ``(b"", subtree)`` and ``(key, value)``)."""
    left, entries = node.get("l"), node.get("e")
    if not isinstance(entries, list) or (left is not None and not isinstance(left, bytes)):
        raise RepoError(f"MST node {_cid_text(cid)} is not an MST node")
    items: list[tuple[bytes, bytes | None]] = []
    if left is not None:
        items.append((b"", left))
    previous = b""
    for entry in entries:
        if not isinstance(entry, dict):
            raise RepoError("an MST entry is not a map")
        prefix, suffix, value, right = entry.get("p"), entry.get("k"), entry.get("v"), entry.get("t")
        if (
            not isinstance(prefix, int)
            or not isinstance(suffix, bytes)
            or not isinstance(value, bytes)
            or (right is not None and not isinstance(right, bytes))
        ):
            raise RepoError("an MST entry lacks its key or value")
        if prefix < 0 or prefix > len(previous):
            raise RepoError("an MST entry's key prefix is longer than the key before it")
        key = previous[:prefix] + suffix
        if not key or len(key) > _MAX_KEY or key.count(b"/") != 1:
            raise RepoError(f"an MST key is not collection/rkey: {key[:200]!r}")
        previous = key
        items.append((key, value))
        if right is not None:
            items.append((b"", right))
    return items


def repo_did(car: bytes) -> str:
    """The DID a repository CAR's root commit names (nothing else is read or checked)."""
    try:
        length, pos = uvarint(car, 0)
        root = libipld.decode_dag_cbor(car[pos : pos + length])["roots"][0]
        start, end = car_blocks(car, {root})[root]
        did = libipld.decode_dag_cbor(car[start:end])["did"]
    except (IndexError, KeyError, TypeError, ValueError) as error:
        raise RepoError(f"no repository commit at the CAR's root: {error}") from None
    if not isinstance(did, str):
        raise RepoError("the root commit names no DID")
    return did


def read_repo(car: bytes) -> Repo:
    """The repository's DID, revision and records, in key order (a CAR held in memory)."""
    repo = RepoFile(car)
    try:
        repo.check()
        return Repo(repo.did, repo.rev, list(repo.records()))
    finally:
        repo.close()
