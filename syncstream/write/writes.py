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
from typing import ClassVar, Protocol

from syncstream.cache import TreeWriter
from syncstream.errors import CacheWriteError
from syncstream.failpoints import ARMED, failpoint, set_process
from syncstream.helper import Answer, Helper, Request, Stoppable, Stopping, helper_arguments, serve

__all__ = ["Drain", "Drained", "FileWrites", "HelperWrites", "InlineWrites", "Skipped", "Writes"]

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


class Writes(Request):
    """Write each ``payloads[i]`` at ``paths[i]``, in order; unanswered."""

    answered: ClassVar[bool] = False
    paths: list[str]
    payloads: list[bytes]


class Drain(Request):
    """Answer once every write sent before is done."""


class Drained(Answer):
    """``failure``: the first fatal failure (``""`` if none; after one, the helper writes
    nothing more); ``skipped``: the writes passed over since the last drain."""

    failure: str
    skipped: Skipped


class FileWrites(Stoppable, Protocol):
    def write(self, path: str, payload: bytes) -> None:
        """Write ``payload`` atomically at ``path`` (now, or by the next ``drain``)."""
        ...

    def drain(self) -> Skipped:
        """Return once every write so far is done, with the writes passed over since the last
        drain; raise ``CacheWriteError`` if the cache cannot take files."""
        ...


class InlineWrites(Stopping):
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

    def kill(self) -> None:
        return None  # every write is done already


class HelperWrites(Stopping):
    """Writes batched to a helper process (``python -m syncstream.write.writes PARENT ROOT``):
    ``Writes`` of ``BATCH`` files each, then a ``Drain``, answered ``Drained``, through
    ``helper``."""

    BATCH = 256  # writes per message: one pipe round per batch, a few hundred KiB at most

    def __init__(self, root: str, *, lock_fd: int | None = None) -> None:
        self.helper = Helper(
            __name__,
            root,
            answers=Drained,
            name="the write helper",
            pass_fds=() if lock_fd is None else (lock_fd,),
        )
        self._paths: list[str] = []
        self._payloads: list[bytes] = []

    def write(self, path: str, payload: bytes) -> None:
        self._paths.append(path)
        self._payloads.append(payload)
        if len(self._paths) >= self.BATCH:
            self._send()

    def _send(self) -> None:
        self.helper.send(Writes(self._paths, self._payloads))
        self._paths, self._payloads = [], []
        if ARMED:
            failpoint("write.batch_sent")

    def drain(self) -> Skipped:
        if self._paths:
            self._send()
        self.helper.send(Drain())
        drained = self.helper.receive(Drained)
        if drained.failure:
            raise CacheWriteError(drained.failure)
        return drained.skipped

    def close(self) -> None:
        """Drain, then stop the helper."""
        try:
            self.drain()
        finally:
            self.helper.close()

    def kill(self) -> None:
        self.helper.kill()


class _Server:
    def __init__(self, root: str) -> None:
        self.files = TreeWriter(root)
        self.failure = ""
        self.skipped: Skipped = []

    def __call__(self, request: Writes | Drain) -> Drained | None:
        if isinstance(request, Drain):
            answer = Drained(self.failure, self.skipped)
            self.skipped = []
            return answer
        if self.failure:  # nothing after a failed write may land: the writer will stop
            return None
        for path, payload in zip(request.paths, request.payloads, strict=True):
            try:
                _write(self.files, path, payload, self.skipped)
            except CacheWriteError as error:
                self.failure = str(error)
                return None
        return None


if __name__ == "__main__":
    set_process("write-helper")
    _root = helper_arguments("syncstream.write.writes", "syncstream.write", "ROOT", 1)[0]
    serve(_Server(_root), Writes | Drain)
