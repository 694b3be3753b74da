"""Relay frames and replay files built from values, for tests of a registry: a commit of a few
ops, written to a replay file, runs through ``python -m syncstream.write --replay FILE`` (or a
writer's ``process_frames``) as the relay's own frames do.

Records are given in the AT Protocol JSON data model, as cache files keep them: ``{"$link":
cid}`` becomes a CID link, ``{"$bytes": base64}`` bytes.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import libipld

from syncstream.firehose.encode import OpSpec, encode_commit_frame
from syncstream.firehose.replay import write_frame

__all__ = ["OpSpec", "commit_frame", "write_replay"]


def _from_json_model(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$link"}:
            return libipld.decode_multibase(value["$link"])[1]  # CID bytes: encoded as a link
        if set(value) == {"$bytes"}:
            text = value["$bytes"]
            return base64.b64decode(text + "=" * (-len(text) % 4))
        return {key: _from_json_model(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_json_model(item) for item in value]
    return value


def commit_frame(
    *,
    seq: int,
    repo: str,
    ops: Iterable[OpSpec | tuple[str, str] | tuple[str, str, Mapping[str, Any] | None]],
    time: str = "2026-07-04T14:38:07.517Z",
    rev: str = "3mptbypluud2a",
) -> bytes:
    """A ``#commit`` frame of ``repo`` at ``seq``: each op an ``OpSpec(action, "collection/rkey",
    record)`` (``create``, ``update`` or ``delete``; a delete has no record), or such a tuple."""
    specs = []
    for op in ops:
        action, path, *rest = op
        record = rest[0] if rest else None
        specs.append(OpSpec(action, path, None if record is None else _from_json_model(dict(record))))
    return encode_commit_frame(seq=seq, repo=repo, rev=rev, time=time, ops=specs)


def write_replay(path: str | Path, frames: Iterable[bytes]) -> Path:
    """Write ``frames`` to ``path`` as a replay file (``[u32 LE length][frame]...``)."""
    path = Path(path)
    with open(path, "wb") as handle:
        for frame in frames:
            write_frame(handle, frame)
    return path
