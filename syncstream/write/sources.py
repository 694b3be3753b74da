"""Where frames come from. A replay file is ``[u32 little-endian length][frame bytes]...``,
optionally zstd-compressed as a whole (the format of the corpus' ``frames.bin.zst``).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import zstandard

__all__ = ["ZSTD_MAGIC", "ReplayError", "iter_replay", "read_frames", "write_frame"]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LENGTH = struct.Struct("<I")


class ReplayError(ValueError):
    """The replay file ends inside a frame."""


def read_frames(stream: BinaryIO) -> Iterator[bytes]:
    """Frames from a replay stream; a file cut inside a frame raises ``ReplayError`` at the cut."""
    read = stream.read
    while True:
        prefix = read(4)
        if not prefix:
            return
        if len(prefix) < 4:
            raise ReplayError("replay ends inside a length prefix")
        (length,) = _LENGTH.unpack(prefix)
        frame = read(length)
        if len(frame) < length:
            raise ReplayError(f"replay ends inside a frame ({len(frame)} of {length} bytes)")
        yield frame


def iter_replay(path: str | Path) -> Iterator[bytes]:
    """Frames of a replay file, streamed (zstd detected by its magic number)."""
    with open(path, "rb", buffering=0) as raw:
        magic = raw.read(4)
        raw.seek(0)
        if magic == ZSTD_MAGIC:
            decompressor = zstandard.ZstdDecompressor()
            reader = decompressor.stream_reader(raw, read_size=1 << 20, read_across_frames=True)
            with io.BufferedReader(reader, buffer_size=1 << 20) as buffered:
                yield from read_frames(buffered)
        else:
            with io.BufferedReader(raw, buffer_size=1 << 20) as buffered:
                yield from read_frames(buffered)


def write_frame(stream: BinaryIO, frame: bytes) -> None:
    stream.write(_LENGTH.pack(len(frame)))
    stream.write(frame)
