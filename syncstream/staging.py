"""The on-disk protocol that the export and the purge share: one home for it.

Everything either command leaves in ``{cache}/.export/`` is laid out, named, written and read
here, so neither parses the other's files:

- ``{claim}.claim``: the handler directories an export moved into ``{claim}/`` (one line each);
- ``{chunk}.files``: a chunk's claim (first line) and its cache files, relative to the claim;
- ``{chunk}.outputs``: the data files the chunk writes, recorded before they are written;
- ``{purge}.purge``: a ``PurgePlan``, what a purge found involved, until it is done;
- ``{claim}.commit``: a ``RunCommit``, written once every data file of the run is written and
  before the first table commit: what each table is to receive, under which application
  transaction, and the run's export keys. Recovery finishes it; nothing else commits a run.

Bookkeeping is written whole (a dot-prefixed temporary, synced, renamed). ``ExportLock`` is the
one lock: exports and purges of a cache take turns. ``Step`` names every step of both
protocols; its values are the failpoint names.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Callable
from enum import StrEnum
from types import TracebackType

import msgspec

from syncstream.errors import CacheLockedError
from syncstream.listing import new_id, read_lines, write_text_atomic

__all__ = [
    "EXPORT_LOCK",
    "STAGING",
    "AddedFile",
    "ExportLock",
    "PurgePlan",
    "RunCommit",
    "Staging",
    "Step",
    "new_id",
]

STAGING = ".export"
EXPORT_LOCK = ".export.lock"


class Step(StrEnum):
    """The steps of the export and purge protocols; each is a failpoint of that name."""

    CLAIM_MANIFEST = "export.claim_manifest"
    CLAIM_RENAME = "export.claim_rename"
    CHUNK_LISTED = "export.chunk_listed"
    OUTPUTS_RECORDED = "export.outputs_recorded"
    PARQUET_TEMP = "export.parquet_temp"
    PARQUET_PLACED = "export.parquet_placed"
    RUN_RECORDED = "export.run_recorded"  # the RunCommit written: the run will commit
    TABLE_COMMITTED = "export.table_committed"  # one table's commit (between a run's tables)
    CONTENT_ERASED = "export.content_erased"  # a table: deleted records' content erased (a commit) ...
    ERASE_VACUUMED = "export.erase_vacuumed"  # ... and the files it replaced vacuumed
    COMMITTED = "export.committed"  # the run's keys in the state store
    REMOVING = "export.removing"
    BOOKKEEPING_REMOVED = "export.bookkeeping_removed"
    CLAIM_REMOVED = "export.claim_removed"
    RECORD_COMMITTED = "export.record_committed"  # a study-record table's rows replaced ...
    RECORD_WRITTEN = "export.record_written"  # ... the replaced files vacuumed, not yet noted
    PURGE_BEGUN = "purge.begun"
    PURGE_CACHE_REMOVED = "purge.cache_removed"
    PURGE_PART_WRITTEN = "purge.part_written"  # a plain-Parquet output: a file rewritten ...
    PURGE_PART_REPLACED = "purge.part_replaced"  # ... and the old one removed
    PURGE_TABLE_REWRITTEN = "purge.table_rewritten"  # a Delta table: files rewritten ...
    PURGE_TABLE_DELETED = "purge.table_deleted"  # ... the rows deleted (a commit) ...
    PURGE_VACUUMED = "purge.vacuumed"  # ... and the files it replaced vacuumed
    PURGE_FINISHED = "purge.finished"


class _Struct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class AddedFile(_Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A data file a run wrote into a table, to be added by the run's commit."""

    path: str  # relative to the table's root: partition_date=YYYY-MM-DD/part-{chunk}.parquet
    partition_date: str
    size: int
    rows: int


class RunCommit(_Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one export run commits: per table (dataset name) its files, under the application
    transaction (app_id, version); its chunks; its keys for the state store."""

    claim: str
    app_id: str
    version: int
    format: str  # "delta" or "parquet"
    chunks: list[str]
    tables: dict[str, list[AddedFile]]
    keys: list[tuple[str, str, str, str, str]]
    pinned: bool  # --keep-cache: the keys stay until an export removes their files
    released: list[tuple[str, str, str, str, str]]
    keep_deleted_content: bool = False  # --keep-deleted-content: recovery does as the run asked


class PurgePlan(_Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a purge found involved, (dataset, URI, follow status), kept until it is done: a
    rerun after part of the removal still removes a delete whose create is gone already."""

    purge_id: str
    involved: list[tuple[str, str, str]]


_encode = msgspec.json.Encoder().encode
_decode_run = msgspec.json.Decoder(RunCommit).decode
_decode_plan = msgspec.json.Decoder(PurgePlan).decode


class ExportLock:
    """The lock exports and purges of one cache take in turns (``flock`` on
    ``{cache}/.export.lock``): ``wait=False`` raises ``CacheLockedError`` when it is held."""

    def __init__(self, root: str, *, wait: bool) -> None:
        self.path = os.path.join(root, EXPORT_LOCK)
        self.root = root
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> ExportLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise CacheLockedError(f"another export is running on {self.root}") from None
            raise
        self._fd = fd
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Staging:
    """``{cache}/.export/``: its paths, its bookkeeping, and the questions recovery asks."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.directory = os.path.join(root, STAGING)

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def names(self) -> list[str]:
        """The bookkeeping names, sorted (ids are times: oldest first)."""
        try:
            return sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []

    def drop(self, *names: str) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name))

    def drop_temporaries(self) -> None:
        """Bookkeeping cut mid-write (never renamed into place) means nothing."""
        self.drop(*(n for n in self.names() if n.startswith(".") and n.endswith(".tmp")))

    # claims and chunks ------------------------------------------------------------------------

    def claims(self) -> list[str]:
        return [n.removesuffix(".claim") for n in self.names() if n.endswith(".claim") and n[0] != "."]

    def claim_directories(self) -> list[str]:
        """The directories of every claim, where claimed cache files wait."""
        with contextlib.suppress(FileNotFoundError), os.scandir(self.directory) as entries:
            return sorted(e.path for e in entries if e.is_dir(follow_symlinks=False) and e.name[0] != ".")
        return []

    def record_claim(self, claim: str, directories: list[str]) -> None:
        write_text_atomic(self.path(f"{claim}.claim"), "".join(f"{d}\n" for d in directories))

    def chunks(self) -> list[str]:
        return [n.removesuffix(".files") for n in self.names() if n.endswith(".files") and n[0] != "."]

    def record_chunk(self, chunk: str, claim: str, relpaths: list[str]) -> None:
        write_text_atomic(self.path(f"{chunk}.files"), claim + "\n" + "".join(f"{r}\n" for r in relpaths))

    def chunk_listing(self, chunk: str) -> tuple[str | None, list[str]]:
        """A chunk's claim and its files (None when the listing is gone)."""
        lines = read_lines(self.path(f"{chunk}.files"))
        return (lines[0], lines[1:]) if lines else (None, [])

    def record_outputs(self, chunk: str, relative_paths: list[str]) -> None:
        write_text_atomic(self.path(f"{chunk}.outputs"), "".join(f"{p}\n" for p in relative_paths))

    def outputs(self, chunk: str) -> list[str]:
        return read_lines(self.path(f"{chunk}.outputs"))

    def chunk_bookkeeping(self, chunk: str) -> list[str]:
        return [self.path(f"{chunk}.outputs"), self.path(f"{chunk}.files")]

    # runs ---------------------------------------------------------------------------------------

    def _write(self, name: str, payload: bytes) -> None:
        os.makedirs(self.directory, exist_ok=True)
        tmp = self.path(f".{name}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, self.path(name))

    def record_run(self, run: RunCommit) -> None:
        self._write(f"{run.claim}.commit", _encode(run))

    def runs(self) -> list[RunCommit]:
        """The runs recorded and not yet done with, oldest first."""
        found = []
        for name in self.names():
            if name.endswith(".commit") and name[0] != ".":
                with open(self.path(name), "rb") as handle:
                    found.append(_decode_run(handle.read()))
        return found

    def drop_run(self, claim: str) -> None:
        self.drop(f"{claim}.commit")

    def pending_outputs(self, committed: Callable[[str], bool]) -> set[str]:
        """Data files written by chunks that no run will commit: in no recorded run, and not
        ``committed`` (by the state store). The export's recovery removes them; so may a purge."""
        in_runs = {chunk for run in self.runs() for chunk in run.chunks}
        found: set[str] = set()
        for chunk in self.chunks():
            if chunk not in in_runs and not committed(chunk):
                found.update(self.outputs(chunk))
        return found

    # purges -------------------------------------------------------------------------------------

    def record_purge(self, plan: PurgePlan) -> None:
        self._write(f"{plan.purge_id}.purge", _encode(plan))

    def purge_plan(self, purge_id: str) -> PurgePlan | None:
        try:
            with open(self.path(f"{purge_id}.purge"), "rb") as handle:
                return _decode_plan(handle.read())
        except FileNotFoundError:
            return None

    def drop_purge(self, purge_id: str) -> None:
        self.drop(f"{purge_id}.purge")
