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
from collections import deque
from collections.abc import Iterable, Sequence
from types import FunctionType
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, Protocol

import msgspec

from syncstream.cache import remove_files
from syncstream.errors import ConfigError, HelperError
from syncstream.export.arrow import import_pyarrow_alone
from syncstream.failpoints import failpoint, set_process
from syncstream.helper import Answer, Helper, Request, Stoppable, Stopping, helper_arguments, serve

if TYPE_CHECKING:
    from syncstream.lake.storage import StorageRepository
    from syncstream.registry.datasets import Dataset

__all__ = [
    "REMOVAL_SLICE",
    "HelperParts",
    "InlineParts",
    "Part",
    "PartWrites",
    "check_sendable",
    "remove_bookkeeping",
    "remove_slice",
    "write_parts",
]


class Part(NamedTuple):
    """One Parquet file: where (under the storage's base), which dataset, and its rows: the
    bytes of one cache file each."""

    relative_path: str
    dataset: Dataset
    files: Sequence[bytes]


class PartWrites(Stoppable, Protocol):
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


class InlineParts(Stopping):
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

    def kill(self) -> None:
        return None  # every part is written already


class Describe(Request):
    """Answered ``Described``: the output, once opened."""


class Described(Answer):
    description: str


class AddDataset(Request):
    """A dataset the next parts use (sent once, before its first part). Pickled: a dataset is
    a value (a registry may build it at run time), not a name; its view and column functions
    go by reference (module and qualified name), as ``check_sendable`` makes sure."""

    pickled: bytes


class PartFiles(msgspec.Struct, array_like=True, gc=False):
    """A ``Part`` with its dataset by name."""

    relative_path: str
    dataset: str
    files: list[bytes]


class WriteParts(Request):
    """Answered ``Written``: each part's size in bytes."""

    parts: list[PartFiles]


class Written(Answer):
    sizes: list[int]


class RemoveSlice(Request):
    """A slice of a committed chunk's cache files (``remove_slice``)."""

    paths: list[str]


class RemoveBookkeeping(Request):
    """A chunk's bookkeeping, once its slices are gone (``remove_bookkeeping``)."""

    paths: list[str]


class RemoveParts(Request):
    """Parts, and a temporary left by a cut write, where they exist."""

    relative_paths: list[str]


PartsRequest = Describe | AddDataset | WriteParts | RemoveSlice | RemoveBookkeeping | RemoveParts
PartsAnswer = Described | Written


class HelperParts(Stopping):
    """Parts written by a helper process that opens ``out`` (a directory or a pyarrow.fs URI).

    Every request (``PartsRequest``) is answered, in order: ``Described``, ``Written`` or
    ``Done``, or ``Failed`` (raised as ``HelperError``). A dataset is sent once, before its
    first part, all through ``helper``. Once the helper has died, every call raises
    ``HelperError`` at once.

    Removal is shared, slice by slice: a slice of a committed chunk's files goes to the helper
    while it has little queued, else this process removes it. Whichever process is ahead does
    the removing, so neither waits long for the other.
    """

    def __init__(self, out: str, *, options: Sequence[str] = ()) -> None:
        self.out = out if "://" in out else os.path.abspath(out)
        self.helper = Helper(__name__, self.out, *options, answers=PartsAnswer, name="the Parquet helper")
        self._sizes: deque[list[int]] = deque()  # answers to WriteParts, read ahead of sizes()
        self._description: str | None = None
        self._sent: set[str] = set()  # the datasets the helper has been given
        self.helper.send(Describe())  # answered once the helper has imported pyarrow
        if "://" in self.out:  # a remote store is checked now; a local directory is made as needed
            self._opened()

    def healthy(self) -> bool:
        return self.helper.alive

    def _read_answer(self) -> None:
        match self.helper.receive(Answer):
            case Written(sizes=sizes):
                self._sizes.append(sizes)
            case Described(description=description):
                self._description = description

    def _opened(self) -> str:
        try:
            while self._description is None:
                self._read_answer()
        except HelperError as error:
            if not self.helper.alive:  # it died (killed, out of memory): no answer about the output
                raise
            self.kill()
            raise ConfigError(f"cannot open the output {self.out}: {error}") from None
        return self._description

    def submit(self, parts: Sequence[Part]) -> None:
        for part in parts:
            if part.dataset.name not in self._sent:
                self.helper.send(AddDataset(pickle.dumps(part.dataset)))
                self._sent.add(part.dataset.name)
        self.helper.send(
            WriteParts([PartFiles(p.relative_path, p.dataset.name, list(p.files)) for p in parts])
        )

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
        helper = self.helper
        for i in range(0, len(files), REMOVAL_SLICE):
            piece = files[i : i + REMOVAL_SLICE]
            while helper.pending and helper.answered():
                self._read_answer()
            if helper.pending >= self.BACKLOG:
                remove_slice(piece)  # the helper has enough queued: do it here
            else:
                helper.send(RemoveSlice(list(piece)))
                helped = True
        if helped:  # after the helper's slices: it takes its requests in order
            helper.send(RemoveBookkeeping(list(then)))
        else:  # every file is gone already
            remove_bookkeeping(then)

    def sync(self) -> None:
        self._opened()
        while self.helper.pending:
            self._read_answer()

    def remove(self, relative_paths: Sequence[str]) -> None:
        """Remove parts (after a failure): answers still due are read and dropped first."""
        self._opened()
        while self.helper.pending:
            try:
                self._read_answer()
            except HelperError:
                if not self.helper.alive:
                    raise
        self.helper.send(RemoveParts(list(relative_paths)))
        self._read_answer()

    def describe(self) -> str:
        return self._opened()

    def close(self) -> None:
        self.helper.close()

    def kill(self) -> None:
        self.helper.kill()


class _Server:
    def __init__(self, out: str, options: Sequence[str]) -> None:
        self.out = out
        self.options = options
        self._storage: StorageRepository | None = None
        self._datasets: dict[str, Dataset] = {}

    def storage(self) -> StorageRepository:
        if self._storage is None:
            from syncstream.lake.storage import storage_for  # noqa: PLC0415
            from syncstream.lake.storage_options import StorageOptions  # noqa: PLC0415

            self._storage = storage_for(self.out, StorageOptions.from_args(self.options))
        return self._storage

    def __call__(self, request: PartsRequest) -> PartsAnswer | None:
        """The answer (None: ``Done``); an error is answered ``Failed``, so that the main
        process can put its claim back."""
        match request:
            case WriteParts(parts=parts):
                found = [Part(p.relative_path, self._datasets[p.dataset], p.files) for p in parts]
                return Written(write_parts(self.storage(), found))
            case AddDataset(pickled=pickled):
                dataset = pickle.loads(pickled)  # from the process that started this one
                self._datasets[dataset.name] = dataset
            case RemoveParts(relative_paths=paths):
                self.storage().remove(paths)
            case Describe():
                return Described(self.storage().describe())
            case RemoveSlice(paths=paths):
                remove_slice(paths)
            case RemoveBookkeeping(paths=paths):
                remove_bookkeeping(paths)
        return None


def _main() -> NoReturn:
    arguments = helper_arguments("syncstream.export.parts", "syncstream.export", "OUT [OPTION ...]", 1)
    import_pyarrow_alone()
    set_process("export-helper")
    serve(_Server(arguments[0], arguments[1:]), PartsRequest)


if __name__ == "__main__":
    _main()
