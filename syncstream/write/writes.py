"""The writer's cache-file writes: in this process, or by a helper process on a second core.

A helper halves the wall time of a backlog in which most ops are kept: the writer decodes and
routes on one core while the helper's atomic writes (four syscalls each) run on another.
Writes reach the helper in batches, in order; ``drain`` returns once every write sent so far
is on disk, and the writer calls it before it makes a batch durable, so the cursor never runs
ahead of the files. The helper holds the writer lock too: no other writer can start until it
has gone, and it dies with the writer (``python -m syncstream.write.writes`` is the helper).
"""

from __future__ import annotations

import errno
from typing import Protocol

from syncstream.cache import TreeWriter
from syncstream.errors import CacheWriteError
from syncstream.failpoints import ARMED, failpoint, set_process
from syncstream.helper import Helper, helper_arguments, serve

__all__ = ["FileWrites", "HelperWrites", "InlineWrites", "Skipped"]

Skipped = list[tuple[str, str]]
"""(path, reason) of writes passed over since the last drain."""

# What stops the writer: the cache as a whole cannot take files (a full or read-only disk, a
# permission). Any other error is the path's own (a link inside the cache, a name the
# filesystem refuses): that write is passed over and counted, and the stream goes on.
_FATAL = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM}
    | {errno.EMFILE, errno.ENFILE}
)


def _write(files: TreeWriter, path: str, payload: bytes, skipped: Skipped) -> None:
    """One write; a path-specific failure is added to ``skipped``, a fatal one raised."""
    try:
        files.write(path, payload)
    except OSError as error:
        if error.errno in _FATAL:
            raise CacheWriteError(f"cannot write {path}: {error}") from error
        code = errno.errorcode.get(error.errno or 0, "error")
        skipped.append((path, "symlink_in_cache" if code == "ELOOP" else f"unwritable:{code}"))
    if ARMED:
        failpoint("write.file_written")


class FileWrites(Protocol):
    def write(self, path: str, payload: bytes) -> None:
        """Write ``payload`` atomically at ``path`` (now, or by the next ``drain``)."""
        ...

    def drain(self) -> Skipped:
        """Return once every write so far is done, with the writes passed over since the last
        drain; raise ``CacheWriteError`` if the cache cannot take files."""
        ...

    def close(self) -> None: ...


class InlineWrites:
    """Each write done at once, in this process."""

    def __init__(self, root: str) -> None:
        self._files = TreeWriter(root)
        self._skipped: Skipped = []

    def write(self, path: str, payload: bytes) -> None:
        _write(self._files, path, payload, self._skipped)

    def drain(self) -> Skipped:
        skipped, self._skipped = self._skipped, []
        return skipped

    def close(self) -> None:
        return None


class HelperWrites:
    """Writes batched to a helper process (``python -m syncstream.write.writes PARENT ROOT``). A
    request is a flat list ``[path, payload, ...]``, unanswered; ``None`` asks for an answer:
    ``[failure, skipped]``, the first fatal failure (``""`` if none; after one, the helper
    writes nothing more) and the writes passed over since the last answer."""

    BATCH = 256  # writes per message: one pipe round per batch, a few hundred KiB at most

    def __init__(self, root: str, *, lock_fd: int | None = None) -> None:
        self._helper = Helper(__name__, root, pass_fds=() if lock_fd is None else (lock_fd,))
        self._batch: list[str | bytes] = []
        self._limit = 2 * self.BATCH

    def write(self, path: str, payload: bytes) -> None:
        batch = self._batch
        batch.append(path)
        batch.append(payload)
        if len(batch) >= self._limit:
            self._send()

    def _send(self) -> None:
        self._helper.send(self._batch)
        self._batch = []
        if ARMED:
            failpoint("write.batch_sent")

    def drain(self) -> Skipped:
        if self._batch:
            self._send()
        self._helper.send(None)
        failure, skipped = self._helper.receive()
        if failure:
            raise CacheWriteError(failure)
        return [(path, reason) for path, reason in skipped]

    def close(self) -> None:
        """Drain, then stop the helper."""
        try:
            self.drain()
        finally:
            self._helper.close()

    def kill(self) -> None:
        """Stop the helper at once, dropping what it has not written (an abort)."""
        self._helper.kill()


class _Server:
    def __init__(self, root: str) -> None:
        self.files = TreeWriter(root)
        self.failure = ""
        self.skipped: Skipped = []

    def __call__(self, request: list[str | bytes] | None) -> list[object] | None:
        if request is None:
            answer: list[object] = [self.failure, self.skipped]
            self.skipped = []
            return answer
        if self.failure:  # nothing after a failed write may land: the writer will stop
            return None
        for i in range(0, len(request), 2):
            path, payload = request[i], request[i + 1]
            assert isinstance(path, str) and isinstance(payload, bytes)
            try:
                _write(self.files, path, payload, self.skipped)
            except CacheWriteError as error:
                self.failure = str(error)
                return None
        return None


if __name__ == "__main__":
    set_process("write-helper")
    _root = helper_arguments("syncstream.write.writes", "syncstream.write", "ROOT", 1)[0]
    raise SystemExit(serve(_Server(_root)))
