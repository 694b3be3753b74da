"""Parquet parts: one export chunk's Tables built, written and committed, here or in a helper.

The export's main process runs the exactly-once protocol (claims, bookkeeping, reading,
deduplicating and removing files: mostly syscalls); building Arrow Tables, writing Parquet
and committing the chunk's keys to SQLite is CPU work. With a helper (``python -m
syncstream.export.parts OUT STATE``) the two overlap on two cores: while the helper writes and
commits chunk N, the main process reads chunk N+1 and removes chunk N-1's files. A part
carries its cache files' bytes through the pipe. Only the helper imports pyarrow.

A chunk is committed (its keys and its id in one SQLite transaction, the protocol's commit
point) only once all its parts are written, and the chunk's answer comes after the commit.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from syncstream.cache import remove_files
from syncstream.errors import ConfigError, HelperError
from syncstream.helper import Helper, serve

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

    from syncstream.export.storage import StorageRepository
    from syncstream.state import ExportKey, StateStore

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
    def submit(self, chunk_id: str, parts: Sequence[Part], keys: Sequence[ExportKey]) -> None:
        """Build and write these parts, then commit ``keys`` as exported by chunk ``chunk_id``
        (now or in the background, in submission order)."""
        ...

    def sizes(self) -> list[int]:
        """The byte sizes of the oldest submission's parts, once written and committed; raises
        if it failed (the chunk may still have been committed: ask the state store)."""
        ...

    def remove(self, relative_paths: Sequence[str]) -> None:
        """Remove these parts (and a temporary left by a cut write) if they exist."""
        ...

    def finish(self, files: Sequence[str], then: Sequence[str]) -> None:
        """Remove local ``files`` (a committed chunk's cache files) and, once they are all
        gone, ``then`` (its bookkeeping); missing ones are skipped. Now or in the background."""
        ...

    def sync(self) -> None:
        """Return once everything submitted is done; raise if something failed."""
        ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def write_parts(
    storage: StorageRepository,
    state: StateStore,
    chunk_id: str,
    parts: Sequence[Part],
    keys: Iterable[ExportKey],
) -> list[int]:
    """Write every part, then commit the chunk: its keys and its id, in one transaction."""
    from syncstream.export.datasets import DATASET_NAMED  # noqa: PLC0415 (the helper starts first)
    from syncstream.export.tables import build_table  # noqa: PLC0415 (pyarrow: the builder only)

    sizes = []
    for part in parts:
        table = build_table(DATASET_NAMED[part.dataset], part.files)
        sizes.append(storage.write(part.relative_path, table))
    state.commit_export(chunk_id, keys, time.time())
    return sizes


class InlineParts:
    """Parts written and committed at once, in this process."""

    def __init__(self, storage: StorageRepository, state: StateStore) -> None:
        self.storage = storage
        self.state = state
        self._done: deque[list[int]] = deque()

    def submit(self, chunk_id: str, parts: Sequence[Part], keys: Sequence[ExportKey]) -> None:
        self._done.append(write_parts(self.storage, self.state, chunk_id, parts, keys))

    def sizes(self) -> list[int]:
        return self._done.popleft()

    def remove(self, relative_paths: Sequence[str]) -> None:
        self.storage.remove(relative_paths)

    def finish(self, files: Sequence[str], then: Sequence[str]) -> None:
        remove_files(files)
        remove_files(then)

    def sync(self) -> None:
        return None

    def describe(self) -> str:
        return self.storage.describe()

    def close(self) -> None:
        return None


class HelperParts:
    """Parts written by a helper process that opens ``out`` (a directory or a pyarrow.fs URI).

    Requests: ``["describe"]``, ``["parts", chunk_id, [[relative_path, dataset, [file bytes,
    ...]], ...], [key, ...]]``,
    ``["finish", [path, ...]]``, ``["remove", [relative_path, ...]]`` and ``["sync"]``; the
    helper answers each, in order, ``["ok", value]`` or ``["error", message]``.

    Removal is shared, slice by slice: a slice of a committed chunk's files goes to the helper
    while it has little queued, else this process removes it. Whichever process is ahead does
    the removing, so neither waits long for the other.
    """

    def __init__(self, out: str, state_path: str) -> None:
        self.out = out if "://" in out else os.path.abspath(out)
        self._helper = Helper(__name__, self.out, os.path.abspath(state_path))
        self._expected: deque[str] = deque()  # the requests not yet answered, in order
        self._sizes: deque[list[int]] = deque()  # answers to "parts", read ahead of sizes()
        self._description: str | None = None
        self._request(["describe"])  # answered once the helper has imported pyarrow
        if "://" in self.out:  # a remote store is checked now; a local directory is made as needed
            self._opened()

    def _request(self, message: list[object]) -> None:
        self._helper.send(message)
        self._expected.append(str(message[0]))

    def _read_answer(self) -> None:
        kind = self._expected.popleft()
        status, value = self._helper.receive()
        if status != "ok":
            raise HelperError(f"the Parquet helper failed ({kind}): {value}")
        if kind == "parts":
            self._sizes.append(value)
        elif kind == "describe":
            self._description = value

    def _opened(self) -> str:
        try:
            while self._description is None:
                self._read_answer()
        except HelperError as error:
            self.kill()
            raise ConfigError(f"cannot open the output {self.out}: {error}") from None
        return self._description

    def submit(self, chunk_id: str, parts: Sequence[Part], keys: Sequence[ExportKey]) -> None:
        files = [[p.relative_path, p.dataset, list(p.files)] for p in parts]
        self._request(["parts", chunk_id, files, list(keys)])

    def sizes(self) -> list[int]:
        self._opened()
        while not self._sizes:
            self._read_answer()
        return self._sizes.popleft()

    FINISH_SLICE = 250  # files per removal decision
    # The helper is sent a removal slice while it has fewer requests than this queued (chunks
    # and slices); measured here, 5 keeps both processes busy to the end (1: the command
    # removes nearly everything; 20: it waits on the helper).
    BACKLOG = 5

    def finish(self, files: Sequence[str], then: Sequence[str]) -> None:
        helped = False
        for i in range(0, len(files), self.FINISH_SLICE):
            piece = files[i : i + self.FINISH_SLICE]
            while self._expected and self._helper.ready():
                self._read_answer()
            if len(self._expected) >= self.BACKLOG:
                remove_files(piece)  # the helper has enough queued: do it here
            else:
                self._request(["finish", list(piece)])
                helped = True
        if helped:  # after the helper's slices: it takes its requests in order
            self._request(["finish", list(then)])
        else:  # every file is gone already
            remove_files(then)

    def sync(self) -> None:
        self._opened()
        while self._expected:
            self._read_answer()

    def remove(self, relative_paths: Sequence[str]) -> None:
        """Remove parts (after a failure): answers still due are read and dropped first."""
        self._opened()
        while self._expected:
            with contextlib.suppress(HelperError):
                self._read_answer()
        self._request(["remove", list(relative_paths)])
        self._read_answer()

    def describe(self) -> str:
        return self._opened()

    def close(self) -> None:
        self._helper.close()

    def kill(self) -> None:
        self._helper.kill()


class _Server:
    def __init__(self, out: str, state_path: str) -> None:
        self.out = out
        self.state_path = state_path
        self._storage: StorageRepository | None = None
        self._state: StateStore | None = None

    def storage(self) -> StorageRepository:
        if self._storage is None:
            from syncstream.export.storage import storage_for  # noqa: PLC0415

            self._storage = storage_for(self.out)
        return self._storage

    def __call__(self, request: list[object]) -> list[object]:
        try:
            match request:
                case ["parts", str(chunk_id), list(parts), list(keys)]:
                    if self._state is None:
                        from syncstream.state import StateStore  # noqa: PLC0415

                        self._state = StateStore(self.state_path)
                    written = [Part(*p) for p in parts]
                    return [
                        "ok",
                        write_parts(self.storage(), self._state, chunk_id, written, map(tuple, keys)),
                    ]
                case ["remove", list(paths)]:
                    self.storage().remove(paths)
                    return ["ok", None]
                case ["describe"]:
                    return ["ok", self.storage().describe()]
                case ["finish", list(paths)]:
                    remove_files(paths)
                    return ["ok", None]
                case ["sync"]:
                    return ["ok", None]
            return ["error", f"unknown request {request[:1]!r}"]
        except Exception as error:  # answered, so the main process can put its claim back
            return ["error", f"{type(error).__name__}: {error}"]


class _Refuse:
    """A meta path finder that makes importing these packages fail, so that a library's
    optional use of them is skipped. (Not an importlib.abc subclass: that import alone costs
    13 ms, before the command has started its helper.)"""

    def __init__(self, *names: str) -> None:
        self.names = names

    def find_spec(self, name: str, path: object, target: object = None) -> ModuleSpec | None:
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
    return serve(_Server(sys.argv[2], sys.argv[3]))


if __name__ == "__main__":
    raise SystemExit(_main())
