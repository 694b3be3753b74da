"""The writer's cache-file writes: in this process, or by a helper process on a second core.

A helper halves the wall time of a backlog in which most ops are kept: the writer decodes and
routes on one core while the helper's atomic writes (four syscalls each) run on another.
Writes reach the helper in batches, in order; ``drain`` returns once every write sent so far
is on disk, and the writer calls it before it makes a batch durable, so the cursor never runs
ahead of the files. The helper holds the writer lock too: no other writer can start until it
has gone, and it dies with the writer (``python -m syncstream.write.files`` is the helper).
"""

from __future__ import annotations

from typing import Protocol

from syncstream.cache import write_atomic
from syncstream.errors import CacheWriteError
from syncstream.helper import Helper, serve

__all__ = ["FileWrites", "HelperWrites", "InlineWrites"]


class FileWrites(Protocol):
    def write(self, path: str, payload: bytes) -> None:
        """Write ``payload`` atomically at ``path`` (now, or by the next ``drain``)."""
        ...

    def drain(self) -> None:
        """Return once every write so far is done; raise ``CacheWriteError`` if one failed."""
        ...

    def close(self) -> None: ...


class InlineWrites:
    """Each write done at once, in this process."""

    def write(self, path: str, payload: bytes) -> None:
        try:
            write_atomic(path, payload)
        except OSError as error:
            raise CacheWriteError(f"cannot write {path}: {error}") from error

    def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


class HelperWrites:
    """Writes batched to a helper process. A request is a flat list ``[path, payload, ...]``,
    unanswered; ``None`` asks for an answer: ``""`` when every write so far succeeded, else
    the first failure (after which the helper writes nothing more)."""

    BATCH = 256  # writes per message: one pipe round per batch, a few hundred KiB at most

    def __init__(self, *, lock_fd: int | None = None) -> None:
        self._helper = Helper(__name__, pass_fds=() if lock_fd is None else (lock_fd,))
        self._batch: list[str | bytes] = []
        self._limit = 2 * self.BATCH

    def write(self, path: str, payload: bytes) -> None:
        batch = self._batch
        batch.append(path)
        batch.append(payload)
        if len(batch) >= self._limit:
            self._helper.send(batch)
            self._batch = []

    def drain(self) -> None:
        if self._batch:
            self._helper.send(self._batch)
            self._batch = []
        self._helper.send(None)
        failure = self._helper.receive()
        if failure:
            raise CacheWriteError(failure)

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
    def __init__(self) -> None:
        self.failure = ""

    def __call__(self, request: list[str | bytes] | None) -> str | None:
        if request is None:
            return self.failure
        if self.failure:  # nothing after a failed write may land: the writer will stop
            return None
        for i in range(0, len(request), 2):
            path, payload = request[i], request[i + 1]
            assert isinstance(path, str) and isinstance(payload, bytes)
            try:
                write_atomic(path, payload)
            except OSError as error:
                self.failure = f"cannot write {path}: {error}"
                return None
        return None


if __name__ == "__main__":
    raise SystemExit(serve(_Server()))
