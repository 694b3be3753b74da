"""How the export reaches object storage: timeouts, passed to the Parquet helper as arguments.

Apart from ``storage.py`` so that the export's main process, which never imports pyarrow, can
hold them.
"""

from __future__ import annotations

from collections.abc import Sequence

from syncstream.options import Options

__all__ = ["StorageOptions"]


class StorageOptions(Options, frozen=True, kw_only=True):
    """How long object storage may take: seconds to connect, and per request. Without them a
    frozen S3 endpoint held an export for 401 s before the SDK gave up."""

    POSITIVE = ("connect_timeout", "request_timeout")

    connect_timeout: float = 10.0
    request_timeout: float = 60.0

    def to_args(self) -> list[str]:
        return [str(self.connect_timeout), str(self.request_timeout)]

    @classmethod
    def from_args(cls, args: Sequence[str]) -> StorageOptions:
        return cls(connect_timeout=float(args[0]), request_timeout=float(args[1])) if args else cls()
