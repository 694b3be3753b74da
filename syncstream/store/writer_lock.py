"""One store, one writer: the writer (and a backfill) holds ``{state}.lock`` with ``flock``.

A sidecar file, not the store itself: SQLite's POSIX locks on the store are dropped when any
descriptor of the file in the process is closed, so a lock of our own on it would be a hazard.
The kernel drops the ``flock`` when the holder dies.
"""

from __future__ import annotations

import errno
import fcntl
import os
from types import TracebackType

from syncstream.errors import StoreLockedError

__all__ = ["StoreLock"]


class StoreLock:
    """The writer's hold on the store at ``path``; ``StoreLockedError`` when another has it."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._fd: int | None = None

    def acquire(self) -> StoreLock:
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StoreLockedError(
                    f"the state store {self.path} is held by another writer (one store, one writer)"
                ) from None
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
