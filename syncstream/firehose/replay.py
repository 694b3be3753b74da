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

from syncstream.errors import ReplayError

__all__ = ["ZSTD_MAGIC", "iter_replay", "read_frames", "write_frame"]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_LENGTH = struct.Struct("<I")


def read_frames(stream: BinaryIO, chunk_size: int = 1 << 22) -> Iterator[bytes]:
    """Frames from a replay stream; a file cut inside a frame raises ``ReplayError`` at the cut.

    Reads large chunks and slices frames out of them: two small reads per frame cost more than
    decoding the frame.
    """
    buffer = b""
    pos = 0
    unpack = _LENGTH.unpack_from
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            break
        buffer = buffer[pos:] + chunk if pos < len(buffer) else chunk
        pos, end = 0, len(buffer)
        while pos + 4 <= end:
            (length,) = unpack(buffer, pos)
            if pos + 4 + length > end:
                break
            yield buffer[pos + 4 : pos + 4 + length]
            pos += 4 + length
    rest = len(buffer) - pos
    if rest >= 4:
        (length,) = unpack(buffer, pos)
        raise ReplayError(f"replay ends inside a frame ({rest - 4} of {length} bytes)")
    if rest:
        raise ReplayError("replay ends inside a length prefix")


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
