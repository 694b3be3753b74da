"""Parquet parts: one export chunk's Tables built and written, here or in a helper process.

The export's main process runs the exactly-once protocol (claims, bookkeeping, reading,
deduplicating, committing and removing files); building Arrow Tables and writing Parquet is
CPU work. With a helper (``python -m syncstream.export.parts PARENT OUT``) the two overlap on
two cores: while the helper writes chunk N, the main process reads chunk N+1 and removes chunk
N-1's files. A part carries its cache files' bytes through the pipe. Only the helper imports
pyarrow.

The helper decides nothing: it writes what it is sent and answers with the sizes. The main
process commits a chunk (its keys and its id, in one SQLite transaction) only after that
answer, so a helper that dies at any instant leaves a chunk that is either committed, by the
main process that then knows it, or not, and redone.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from types import FunctionType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from syncstream.cache import remove_files
from syncstream.errors import ConfigError, HelperError
from syncstream.failpoints import failpoint, set_process
from syncstream.helper import Helper, helper_arguments, serve

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

    from syncstream.registry.datasets import Dataset
    from syncstream.storage import StorageRepository

__all__ = [
    "REMOVAL_SLICE",
    "HelperParts",
    "InlineParts",
    "Part",
    "PartWrites",
    "check_sendable",
    "remove_bookkeeping",
    "remove_slice",
    "spare_pyarrow_the_pandas_import",
    "write_parts",
]


class Part(NamedTuple):
    """One Parquet file: where (under the storage's base), which dataset, and its rows: the
    bytes of one cache file each."""

    relative_path: str
    dataset: Dataset
    files: Sequence[bytes]


class PartWrites(Protocol):
    def submit(self, parts: Sequence[Part]) -> None:
        """Build and write these parts (now or in the background, in submission order)."""
        ...

    def sizes(self) -> list[int]:
        """The byte sizes of the oldest submission's parts, once all are written; raises if
        one could not be (some may have been: they are named in the chunk's outputs)."""
        ...

    def remove(self, relative_paths: Sequence[str]) -> None:
        """Remove these parts (and a temporary left by a cut write) if they exist."""
        ...

    def finish(self, files: Sequence[str], then: Sequence[str]) -> None:
        """Remove local ``files`` (a committed chunk's cache files) and, once they are all
        gone, ``then`` (its bookkeeping); missing ones are skipped. Now or in the background."""
        ...

    def healthy(self) -> bool:
        """False once the part writer can take no more work (its helper died)."""
        ...

    def sync(self) -> None:
        """Return once everything submitted is done; raise if something failed."""
        ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def write_parts(storage: StorageRepository, parts: Sequence[Part]) -> list[int]:
    """Write every part; their sizes in bytes."""
    from syncstream.export.tables import build_table  # noqa: PLC0415 (pyarrow: the builder only)

    return [storage.write(part.relative_path, build_table(part.dataset, part.files)) for part in parts]


class _Refusing(pickle.Pickler):
    """A pickler that names a function or class of the script run as ``__main__``: it pickles
    by reference to ``__main__``, which in the helper is the helper, not the script."""

    def reducer_override(self, obj: object) -> Any:
        if isinstance(obj, type | FunctionType) and getattr(obj, "__module__", None) == "__main__":
            raise pickle.PicklingError(f"{obj.__qualname__} is defined in the script run as __main__")
        return NotImplemented


def check_sendable(datasets: Iterable[Dataset]) -> None:
    """Raise ``ConfigError`` unless every dataset can be sent to a helper: it goes by pickle,
    its views and column functions by reference, so each must be importable by name."""
    for dataset in datasets:
        try:
            _Refusing(io.BytesIO()).dump(dataset)
        except (pickle.PicklingError, AttributeError, TypeError) as error:
            raise ConfigError(
                f"dataset {dataset.name} cannot be sent to the Parquet helper ({error}); give its "
                "view and columns module-level functions of a module imported by name (the "
                "commands' --handlers MODULE:NAME; not the script run as __main__), or export "
                "without a helper process"
            ) from None


REMOVAL_SLICE = 250  # cache files removed between two looks at what else is due


def remove_slice(files: Sequence[str]) -> None:
    """Remove one slice of a committed chunk's cache files."""
    remove_files(files)
    failpoint("export.removing")


def remove_bookkeeping(files: Sequence[str]) -> None:
    """Remove a chunk's bookkeeping, once every slice of its files is gone."""
    remove_files(files)
    failpoint("export.bookkeeping_removed")


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

    def finish(self, files: Sequence[str], then: Sequence[str]) -> None:
        for i in range(0, len(files), REMOVAL_SLICE):
            remove_slice(files[i : i + REMOVAL_SLICE])
        remove_bookkeeping(then)

    def healthy(self) -> bool:
        return True

    def sync(self) -> None:
        return None

    def describe(self) -> str:
        return self.storage.describe()

    def close(self) -> None:
        return None


class HelperParts:
    """Parts written by a helper process that opens ``out`` (a directory or a pyarrow.fs URI).

    Requests: ``["describe"]``, ``["dataset", pickled Dataset]`` (once per dataset, before its
    first part), ``["parts", [[relative_path, dataset name, [file bytes, ...]], ...]]``,
    ``["finish", [path, ...]]``, ``["forget", [path, ...]]`` (a chunk's bookkeeping),
    ``["remove", [relative_path, ...]]`` and ``["sync"]``; the helper answers each, in order,
    ``["ok", value]`` or ``["error", message]``. Once the helper has died, every call raises
    ``HelperError`` at once.

    Removal is shared, slice by slice: a slice of a committed chunk's files goes to the helper
    while it has little queued, else this process removes it. Whichever process is ahead does
    the removing, so neither waits long for the other.
    """

    def __init__(self, out: str, *, options: Sequence[str] = ()) -> None:
        self.out = out if "://" in out else os.path.abspath(out)
        self._helper = Helper(__name__, self.out, *options)
        self._expected: deque[str] = deque()  # the requests not yet answered, in order
        self._sizes: deque[list[int]] = deque()  # answers to "parts", read ahead of sizes()
        self._description: str | None = None
        self._dead: HelperError | None = None
        self._sent: set[str] = set()  # the datasets the helper has been given
        self._request(["describe"])  # answered once the helper has imported pyarrow
        if "://" in self.out:  # a remote store is checked now; a local directory is made as needed
            self._opened()

    def healthy(self) -> bool:
        return self._dead is None

    def _request(self, message: list[object]) -> None:
        if self._dead is not None:
            raise self._dead
        try:
            self._helper.send(message)
        except HelperError as error:
            self._dead = error
            raise
        self._expected.append(str(message[0]))

    def _read_answer(self) -> None:
        if self._dead is not None:
            raise self._dead
        kind = self._expected.popleft()
        try:
            status, value = self._helper.receive()
        except HelperError as error:
            self._dead = error
            raise
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

    def submit(self, parts: Sequence[Part]) -> None:
        for part in parts:
            if part.dataset.name not in self._sent:
                self._request(["dataset", pickle.dumps(part.dataset)])
                self._sent.add(part.dataset.name)
        self._request(["parts", [[p.relative_path, p.dataset.name, list(p.files)] for p in parts]])

    def sizes(self) -> list[int]:
        self._opened()
        while not self._sizes:
            self._read_answer()
        return self._sizes.popleft()

    # The helper is sent a removal slice while it has fewer requests than this queued (chunks
    # and slices); measured here, 5 keeps both processes busy to the end (1: the command
    # removes nearly everything; 20: it waits on the helper).
    BACKLOG = 5

    def finish(self, files: Sequence[str], then: Sequence[str]) -> None:
        helped = False
        for i in range(0, len(files), REMOVAL_SLICE):
            piece = files[i : i + REMOVAL_SLICE]
            while self._expected and self._helper.ready():
                self._read_answer()
            if len(self._expected) >= self.BACKLOG:
                remove_slice(piece)  # the helper has enough queued: do it here
            else:
                self._request(["finish", list(piece)])
                helped = True
        if helped:  # after the helper's slices: it takes its requests in order
            self._request(["forget", list(then)])
        else:  # every file is gone already
            remove_bookkeeping(then)

    def sync(self) -> None:
        self._opened()
        while self._expected:
            self._read_answer()

    def remove(self, relative_paths: Sequence[str]) -> None:
        """Remove parts (after a failure): answers still due are read and dropped first."""
        self._opened()
        while self._expected:
            try:
                self._read_answer()
            except HelperError:
                if self._dead is not None:
                    raise
        self._request(["remove", list(relative_paths)])
        self._read_answer()

    def describe(self) -> str:
        return self._opened()

    def close(self) -> None:
        if self._dead is not None:
            self._helper.kill()
        else:
            self._helper.close()

    def kill(self) -> None:
        self._helper.kill()


class _Server:
    def __init__(self, out: str, options: Sequence[str]) -> None:
        self.out = out
        self.options = options
        self._storage: StorageRepository | None = None
        self._datasets: dict[str, Dataset] = {}

    def storage(self) -> StorageRepository:
        if self._storage is None:
            from syncstream.storage import storage_for  # noqa: PLC0415
            from syncstream.storage_options import StorageOptions  # noqa: PLC0415

            self._storage = storage_for(self.out, StorageOptions.from_args(self.options))
        return self._storage

    def __call__(self, request: list[object]) -> list[object]:
        try:
            match request:
                case ["parts", list(parts)]:
                    found = [Part(path, self._datasets[name], files) for path, name, files in parts]
                    return ["ok", write_parts(self.storage(), found)]
                case ["dataset", bytes(pickled)]:
                    dataset = pickle.loads(pickled)  # from the process that started this one
                    self._datasets[dataset.name] = dataset
                    return ["ok", None]
                case ["remove", list(paths)]:
                    self.storage().remove(paths)
                    return ["ok", None]
                case ["describe"]:
                    return ["ok", self.storage().describe()]
                case ["finish", list(paths)]:
                    remove_slice(paths)
                    return ["ok", None]
                case ["forget", list(paths)]:
                    remove_bookkeeping(paths)
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
    arguments = helper_arguments("syncstream.export.parts", "syncstream.export", "OUT [OPTION ...]", 1)
    # The helper is a process of its own: pyarrow (>= 16) takes numpy and pandas as optional,
    # and without them it imports in a third of the time (0.05 s instead of 0.16 s) and 11 MiB
    # less; nothing here converts to or from either.
    sys.meta_path.insert(0, _Refuse("numpy", "pandas"))
    import pyarrow as pa  # noqa: PLC0415

    # The default (mimalloc) pool keeps what a chunk freed for the next: 22 MiB more at peak
    # here, for no measurable speed. Chunks are a few MiB, allocated and freed whole.
    pa.set_memory_pool(pa.system_memory_pool())
    set_process("export-helper")
    return serve(_Server(arguments[0], arguments[1:]))


if __name__ == "__main__":
    raise SystemExit(_main())
