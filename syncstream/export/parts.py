"""Parquet parts: the Tables of one export chunk built and written, here or in a helper process.

The export's main process runs the exactly-once protocol (claims, bookkeeping, SQLite, reading
and removing files: mostly syscalls); building Arrow Tables and writing Parquet is CPU work.
With a helper (``python -m syncstream.export.parts OUT``) the two overlap on two cores: while
the helper writes chunk N's parts, the main process reads chunk N+1 and removes chunk N-1's
files. A part carries its cache files' bytes through the pipe. Only the helper imports pyarrow.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from syncstream.cache import remove_files
from syncstream.errors import ConfigError, HelperError
from syncstream.export.datasets import DATASET_NAMED, decode_head
from syncstream.helper import Helper, serve

if TYPE_CHECKING:
    from syncstream.export.storage import StorageRepository

__all__ = [
    "HelperParts",
    "InlineParts",
    "Part",
    "PartWrites",
    "spare_pyarrow_the_pandas_import",
    "write_parts",
]


class Part(NamedTuple):
    """One Parquet file: where (under the storage's base), which dataset, and its rows: the
    bytes of one cache file each."""

    relative_path: str
    dataset: str
    files: Sequence[bytes]


class PartWrites(Protocol):
    def submit(self, parts: Sequence[Part]) -> None:
        """Build and write these parts (now or in the background, in submission order)."""
        ...

    def sizes(self) -> list[int]:
        """The byte sizes of the oldest submission's parts, once written; raises if it failed."""
        ...

    def remove(self, relative_paths: Sequence[str]) -> None:
        """Remove these parts (and a temporary left by a cut write) if they exist."""
        ...

    def finish(self, paths: Sequence[str]) -> None:
        """Remove these local files in this order, missing ones skipped (a committed chunk's
        cache files, then its bookkeeping): now or in the background, after what came before."""
        ...

    def sync(self) -> None:
        """Return once everything submitted is done; raise if something failed."""
        ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def write_parts(storage: StorageRepository, parts: Sequence[Part]) -> list[int]:
    from syncstream.export.tables import build_table  # noqa: PLC0415 (pyarrow: the builder only)

    sizes = []
    for part in parts:
        heads = [decode_head(data) for data in part.files]
        table = build_table(DATASET_NAMED[part.dataset], heads)
        sizes.append(storage.write(part.relative_path, table))
    return sizes


class InlineParts:
    """Parts written at once, in this process."""

    def __init__(self, storage: StorageRepository) -> None:
        self.storage = storage
        self._done: deque[list[int]] = deque()

    def submit(self, parts: Sequence[Part]) -> None:
        self._done.append(write_parts(self.storage, parts))

    def sizes(self) -> list[int]:
        return self._done.popleft()

    def remove(self, relative_paths: Sequence[str]) -> None:
        self.storage.remove(relative_paths)

    def finish(self, paths: Sequence[str]) -> None:
        remove_files(paths)

    def sync(self) -> None:
        return None

    def describe(self) -> str:
        return self.storage.describe()

    def close(self) -> None:
        return None


class HelperParts:
    """Parts written by a helper process that opens ``out`` (a directory or a pyarrow.fs URI).

    Requests: ``["parts", [[relative_path, dataset, [file bytes, ...]], ...]]``, ``["remove",
    [relative_path, ...]]``, ``["sync"]`` and ``["describe"]``, each answered ``["ok", value]``
    or ``["error", message]``, in order; and ``["finish", [path, ...]]``, unanswered (a failure
    there fails the next answer, and the helper does nothing more)."""

    def __init__(self, out: str) -> None:
        self.out = out
        self._helper = Helper(__name__, out)
        self._pending = 0
        self._description: str | None = None
        self._helper.send(["describe"])  # answered once the helper has imported pyarrow
        if "://" in out:  # a remote store is checked now; a local directory is made as needed
            self._opened()

    def _opened(self) -> str:
        if self._description is None:
            try:
                value = self._answer()
            except HelperError as error:
                self.kill()
                raise ConfigError(f"cannot open the output {self.out}: {error}") from None
            self._description = value if isinstance(value, str) else self.out
        return self._description

    def _answer(self) -> object:
        status, value = self._helper.receive()
        if status != "ok":
            raise HelperError(f"writing Parquet failed: {value}")
        return value

    def _call(self, request: list[object]) -> str:
        """Send ``request`` and wait for its answer. Parts still in flight are abandoned: their
        answers are read (in order, ahead of this one) and dropped, failures included."""
        self._opened()
        while self._pending:
            self._pending -= 1
            with contextlib.suppress(HelperError):
                self._answer()
        self._helper.send(request)
        value = self._answer()
        return value if isinstance(value, str) else ""

    def submit(self, parts: Sequence[Part]) -> None:
        self._helper.send(["parts", [[p.relative_path, p.dataset, list(p.files)] for p in parts]])
        self._pending += 1

    def sizes(self) -> list[int]:
        self._opened()
        self._pending -= 1
        value = self._answer()
        assert isinstance(value, list)
        return value

    def remove(self, relative_paths: Sequence[str]) -> None:
        self._call(["remove", list(relative_paths)])

    def finish(self, paths: Sequence[str]) -> None:
        self._helper.send(["finish", list(paths)])

    def sync(self) -> None:
        self._call(["sync"])

    def describe(self) -> str:
        return self._opened()

    def close(self) -> None:
        self._helper.close()

    def kill(self) -> None:
        self._helper.kill()


class _Server:
    def __init__(self, out: str) -> None:
        self.out = out
        self._storage: StorageRepository | None = None
        self.failure = ""

    def storage(self) -> StorageRepository:
        if self._storage is None:
            from syncstream.export.storage import storage_for  # noqa: PLC0415

            self._storage = storage_for(self.out)
        return self._storage

    def __call__(self, request: list[object]) -> list[object] | None:
        if request[0] == "finish":
            if not self.failure:
                try:
                    remove_files(request[1])  # type: ignore[arg-type]
                except OSError as error:
                    self.failure = f"removing exported cache files: {error}"
            return None
        if self.failure:
            return ["error", self.failure]
        try:
            match request:
                case ["parts", list(parts)]:
                    return ["ok", write_parts(self.storage(), [Part(*p) for p in parts])]
                case ["remove", list(paths)]:
                    self.storage().remove(paths)
                    return ["ok", None]
                case ["describe"]:
                    return ["ok", self.storage().describe()]
                case ["sync"]:
                    return ["ok", None]
            return ["error", f"unknown request {request[:1]!r}"]
        except Exception as error:  # answered, so the main process can put its claim back
            return ["error", f"{type(error).__name__}: {error}"]


class _Refuse(importlib.abc.MetaPathFinder):
    """Makes importing these packages fail, so that a library's optional use of them is skipped."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def find_spec(
        self, name: str, path: object, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name.partition(".")[0] in self.names:
            raise ImportError(
                f"{name}: the exporter builds Arrow arrays from lists and needs none of {self.names}"
            )
        return None


def spare_pyarrow_the_pandas_import() -> None:
    """pyarrow.array() probes for pandas on its first call and imports it when installed:
    measured here at 0.4 s and 90 MiB per export, for nothing. In our own processes (not a
    pipeline that imports the library) let that one probe fail; pandas stays importable."""
    if "pandas" in sys.modules:
        return
    import pyarrow as pa  # noqa: PLC0415

    finder = _Refuse("pandas")
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])
    finally:
        sys.meta_path.remove(finder)


def _main() -> int:
    # The helper is a process of its own: pyarrow (>= 16) takes numpy and pandas as optional,
    # and without them it imports in a third of the time (0.05 s instead of 0.16 s) and 11 MiB
    # less; nothing here converts to or from either.
    sys.meta_path.insert(0, _Refuse("numpy", "pandas"))
    import pyarrow as pa  # noqa: PLC0415

    # The default (mimalloc) pool keeps what a chunk freed for the next: 22 MiB more at peak
    # here, for no measurable speed. Chunks are a few MiB, allocated and freed whole.
    pa.set_memory_pool(pa.system_memory_pool())
    return serve(_Server(sys.argv[2]))


if __name__ == "__main__":
    raise SystemExit(_main())
