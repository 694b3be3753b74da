"""The only file I/O of the cache: atomic writes, listing, reading, removing, tree lifecycle.

Readers skip dot-prefixed names, so a temporary file is never mistaken for a record, and a
record file appears only by ``rename``: a reader sees all of it or none of it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Iterable, Iterator
from types import TracebackType

from syncstream.errors import CacheLockedError

__all__ = [
    "LOCK_NAME",
    "WriterLock",
    "create_tree",
    "read_bytes",
    "read_flat",
    "read_nested",
    "remove_files",
    "reset_tree",
    "write_atomic",
]

LOCK_NAME = ".writer.lock"
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)


def write_atomic(path: str, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that no reader ever sees a partial file.

    The temporary name is fixed per target: one writer holds the cache, and a crash leaves at
    most one dot-file that the replay after it reuses. An export claims whole handler
    directories by renaming them: a write caught in between (its directory, temporary and all,
    moved away) is simply done again in the directory's new incarnation.
    """
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.tmp")
    for _ in range(_ATTEMPTS):
        try:
            fd = os.open(tmp, _FLAGS, 0o644)
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            continue
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        try:
            os.rename(tmp, path)
        except FileNotFoundError:
            continue
        return
    raise OSError(errno.ENOENT, f"{directory} kept disappearing while writing {name}")


_ATTEMPTS = 8


def _visible_files(directory: str) -> Iterator[str]:
    try:
        with os.scandir(directory) as entries:
            for e in entries:
                if e.name.endswith(".json") and e.name[:1] != "." and e.is_file():
                    yield e.path
    except FileNotFoundError:
        return


def read_flat(directory: str) -> Iterator[str]:
    """Paths of the record files directly in ``directory``."""
    return _visible_files(directory)


def read_nested(directory: str) -> Iterator[str]:
    """Paths of the record files one level down, in ``directory/{nested_key}/``."""
    try:
        with os.scandir(directory) as entries:
            # Nested names are rkeys or DIDs, and an rkey may start with a dot (".0" is valid):
            # only file names are filtered for the dot of a temporary.
            subdirs = [e.path for e in entries if e.is_dir()]
    except FileNotFoundError:
        return iter(())
    return (path for subdir in sorted(subdirs) for path in _visible_files(subdir))


def read_bytes(path: str) -> bytes:
    """A file's bytes, in as few syscalls as a small file allows (no buffered reader)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _READ_SIZE)
        if len(data) < _READ_SIZE:  # a short read of a regular file is its end
            return data
        chunks = [data]
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


_READ_SIZE = 1 << 16


def remove_files(paths: Iterable[str]) -> int:
    """Remove exactly these files; return how many were removed (missing ones are skipped)."""
    removed = 0
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed += 1
    return removed


def create_tree(root: str, directories: Iterable[str]) -> None:
    for relative in directories:
        os.makedirs(os.path.join(root, relative), exist_ok=True)


class WriterLock:
    """An exclusive ``flock`` on ``{root}/.writer.lock``, held for as long as a writer runs.

    The kernel drops it when the process dies, so a crashed writer never leaves the cache locked.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(os.path.join(self.root, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise CacheLockedError(f"the cache {self.root} is held by a running writer") from None
            raise
        self._fd = fd
        return self

    def fileno(self) -> int:
        """The locked descriptor: a process it is passed to holds the lock until it exits."""
        if self._fd is None:
            raise ValueError("the writer lock is not held")
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def reset_tree(root: str, directories: Iterable[str]) -> None:
    """Empty the cache and lay the tree anew; refuses while a writer holds the cache."""
    with WriterLock(root):
        for name in os.listdir(root):
            if name == LOCK_NAME:
                continue
            path = os.path.join(root, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        create_tree(root, directories)
