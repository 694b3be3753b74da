"""The only file I/O of the cache: atomic writes, listing, reading, removing, tree lifecycle.

Readers skip dot-prefixed names, so a temporary file is never mistaken for a record, and a
record file appears only by ``rename``: a reader sees all of it or none of it.

The cache root is a boundary: no symbolic link inside it is followed. Files are opened with
``O_NOFOLLOW``, listings do not follow links, and a ``TreeWriter`` checks each directory it
writes into (every component below the root a real directory) the first time it uses it and
whenever it has to create it; a directory it finds linked is refused, never written through.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType

from syncstream.errors import CacheLockedError, SymlinkInCacheError
from syncstream.registry.handlers import HandlerConfig, record_path
from syncstream.registry.records import CachedRecord, decode_record, encode_record

__all__ = [
    "LOCK_NAME",
    "SET_ASIDE",
    "TreeWriter",
    "WriterLock",
    "check_no_links",
    "create_tree",
    "make_directories",
    "read_bytes",
    "read_records",
    "remove_files",
    "reset_tree",
    "stray_entries",
    "sync_filesystem",
    "write_atomic",
    "write_record",
]

LOCK_NAME = ".writer.lock"
SET_ASIDE = ".set-aside"  # files the export could not turn into rows; a reset keeps them
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


def check_no_links(root: str, directory: str) -> bool:
    """Check each existing component of ``directory`` below ``root`` (both absolute, ``root``
    with its own links resolved) with ``lstat``: raise ``SymlinkInCacheError`` at a link and
    ``NotADirectoryError`` at any other non-directory; False when a component does not exist yet."""
    if directory == root:
        return True
    if not directory.startswith(root + "/"):
        raise SymlinkInCacheError(directory)
    current = root
    for name in directory[len(root) + 1 :].split("/"):
        current = f"{current}/{name}"
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(mode):
            raise _not_a_directory(current, mode)
    return True


def _not_a_directory(path: str, mode: int) -> OSError:
    if stat.S_ISLNK(mode):
        return SymlinkInCacheError(path)
    return NotADirectoryError(errno.ENOTDIR, "not a directory", path)


def make_directories(root: str, directory: str) -> None:
    """``os.makedirs`` that never creates through a link: mkdir one component at a time."""
    current = root
    for name in directory[len(root) + 1 :].split("/"):
        current = f"{current}/{name}"
        try:
            os.mkdir(current)
        except FileExistsError:
            mode = os.lstat(current).st_mode
            if not stat.S_ISDIR(mode):
                raise _not_a_directory(current, mode) from None


class TreeWriter:
    """Atomic writes under ``root`` that never go through a symbolic link inside it.

    The directories checked so far are remembered (a bounded set): a directory renamed away by
    an export makes the next write in it fail to open, which drops it from the set and
    checks it again as it is made anew.
    """

    MAX_CHECKED = 1 << 16

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        self._checked: set[str] = set()

    def write(self, path: str, payload: bytes) -> None:
        directory = os.path.dirname(path)
        checked = self._checked
        if directory not in checked:
            if len(checked) >= self.MAX_CHECKED:
                checked.clear()
            if check_no_links(self.root, directory):
                checked.add(directory)
        write_atomic(path, payload, make_directory=self._make)

    def _make(self, directory: str) -> None:
        self._checked.discard(directory)
        make_directories(self.root, directory)
        check_no_links(self.root, directory)  # what was made, or found made, is real
        self._checked.add(directory)


def write_atomic(path: str, payload: bytes, *, make_directory: Callable[[str], None] | None = None) -> None:
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
            if make_directory is None:
                os.makedirs(directory, exist_ok=True)
            else:
                make_directory(directory)
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


def stray_entries(root: str, directories: Mapping[str, bool]) -> list[str]:
    """What under ``root`` no handler of ``directories`` (directory -> nested) would read: a
    folder or file beside the handlers' directories, a folder in a flat handler's directory,
    a file at the top of a nested one. Relative paths, sorted. Dot-names at the root (the
    protocols' own) and in a handler's directory (temporaries), and links, are not looked at;
    nested directories are not entered (their names are the writer's)."""
    above = {d.rsplit("/", i)[0] for d in directories for i in range(1, d.count("/") + 1)}
    found: list[str] = []

    def look(relative: str) -> None:
        try:
            with os.scandir(os.path.join(root, relative)) as listed:
                entries = [(e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in listed]
        except (FileNotFoundError, NotADirectoryError):
            return
        nested = directories.get(relative)
        for name, is_dir, is_link in sorted(entries):
            path = f"{relative}/{name}" if relative else name
            if is_link or (name[:1] == "." and (not relative or not is_dir)):
                continue
            if nested is None:  # above the handlers' directories
                if path in directories or (is_dir and path in above):
                    look(path)
                else:
                    found.append(path + "/" if is_dir else path)
            elif is_dir != nested or not (is_dir or name.endswith(".json")):
                found.append(path + "/" if is_dir else path)

    look("")
    return found


def read_bytes(path: str) -> bytes:
    """A file's bytes, in as few syscalls as a small file allows (no buffered reader)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
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


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs``, where there is one (Linux); ctypes is imported only on first use."""
    try:
        import ctypes  # noqa: PLC0415

        function: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    return function


def sync_filesystem(path: str) -> None:
    """Make every write to the filesystem holding ``path`` durable: ``syncfs`` on that one
    filesystem (``os.sync()``, which flushes every filesystem of the host and stalls other
    jobs on a shared server, only where there is no ``syncfs``)."""
    syncfs = _syncfs()
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if syncfs(fd) != 0:
            import ctypes  # noqa: PLC0415

            code = ctypes.get_errno()
            raise OSError(code, f"syncfs failed: {os.strerror(code)}", path)
    finally:
        os.close(fd)


def create_tree(root: str, directories: Iterable[str]) -> None:
    """Lay out these directories under ``root``; raise ``SymlinkInCacheError`` where one of
    them, or a directory above it, is a link."""
    root = os.path.realpath(root)
    for relative in directories:
        make_directories(root, os.path.join(root, relative))


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

    def holder(self) -> str | None:
        """The command that holds the lock (``python -m syncstream.backfill (pid 12)``), read
        from the kernel's lock table (Linux), or None. Nothing is written for it: a rerun of
        finished work touches no file of the cache."""
        try:
            found = os.stat(os.path.join(self.root, LOCK_NAME))
            where = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino}"
            with open("/proc/locks", encoding="ascii") as locks:
                pids = [
                    f[4] for f in map(str.split, locks) if len(f) > 5 and f[1] == "FLOCK" and f[5] == where
                ]
            if not pids:
                return None
            with open(f"/proc/{pids[0]}/cmdline", "rb") as cmdline:
                words = [w.decode(errors="replace") for w in cmdline.read().split(b"\0") if w]
        except (OSError, ValueError):
            return None
        module = words[words.index("-m") + 1] if "-m" in words[:-1] else None
        command = f"python -m {module}" if module else os.path.basename(words[0]) if words else "?"
        return f"{command} (pid {pids[0]})"

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


def reset_tree(root: str, directories: Iterable[str]) -> list[str]:
    """Empty the cache of its directories and lay the tree anew; refuses while a writer holds
    the cache. No file is ever removed (the export removes what it exported, and nothing
    else): every directory left empty goes, links are removed, never followed, and the files
    still there (outside ``.set-aside/``, which is kept whole) are returned, relative, sorted."""
    kept: list[str] = []
    with WriterLock(root):
        for name in os.listdir(root):
            if name in (LOCK_NAME, SET_ASIDE):
                continue
            path = os.path.join(root, name)
            if os.path.islink(path):
                os.unlink(path)
            elif os.path.isdir(path):
                _empty(root, path, kept)
            elif not name.startswith("."):  # the export's lock, say, stays: it is no record
                kept.append(name)
        create_tree(root, directories)
    return sorted(kept)


def _empty(root: str, directory: str, kept: list[str]) -> None:
    """Remove ``directory``'s links and empty directories, bottom up; note the files kept."""
    for parent, subdirs, files in os.walk(directory, topdown=False):
        for name in files:
            path = os.path.join(parent, name)
            if os.path.islink(path):
                os.unlink(path)
            else:
                kept.append(os.path.relpath(path, root))
        for name in subdirs:  # os.walk lists a link to a directory here, and does not enter it
            path = os.path.join(parent, name)
            if os.path.islink(path):
                os.unlink(path)
            else:
                with contextlib.suppress(OSError):  # not empty: it holds a file kept
                    os.rmdir(path)
    with contextlib.suppress(OSError):
        os.rmdir(directory)


def write_record(root: str, config: HandlerConfig, record: CachedRecord) -> str:
    """Write ``record`` where its handler puts it (``record_path``); return the path."""
    path = record_path(root, config, record)
    write_atomic(path, encode_record(record))
    return path


def read_records(root: str, config: HandlerConfig) -> Iterator[tuple[str, CachedRecord]]:
    """Every record file of a handler, found by its read strategy, with its record."""
    for path in config.read_strategy(os.path.join(root, config.directory)):
        yield path, decode_record(read_bytes(path))
