"""One lock per output: every command that commits to an output's tables (an export, with the
purges it applies first; a purge; a compaction) holds it while it does, so that no two of them
interleave on one lake, whichever store, cache or machine they run from.

delta-rs does not conflict-check a purge's commit (an append carrying removes) against a
compaction's ``dataChange=false`` removes of the same files: overlapping, the two would double
another account's rows for good, or leave the compaction's uncommitted files holding a purged
account's rows. Taking turns is the one rule that covers every pair.

- A local output: ``flock`` on ``{out}/.syncstream-lake.lock``; the kernel drops it when the
  holder dies, so a killed command never leaves the lake locked (a stopped one holds it).
- An S3 output: a lease, kept as the commits of a small Delta table,
  ``{out}/.syncstream-lake-lock``, each commit's metadata saying who holds it until when.
  A commit is a conditional put that fails when another commit took its version, so of two
  takers one wins; the holder renews its lease every quarter of ``LEASE_SECONDS`` and frees
  it when done; a lease not renewed (its holder killed, or stopped longer than a lease) is
  taken over once it runs out. The machines' clocks must agree to well within a lease.

The lock is re-entrant within a process: an export that applies purges holds the lock once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
from types import TracebackType

from syncstream.errors import LakeLockedError

__all__ = ["LEASE_SECONDS", "LOCK_FILE", "LOCK_TABLE", "LakeLock"]

log = logging.getLogger("syncstream.lake.lock")

LOCK_FILE = ".syncstream-lake.lock"
LOCK_TABLE = ".syncstream-lake-lock"
LEASE_SECONDS = 60.0
_MARK = "syncstream-lake-lock"
_POLL_SECONDS = 0.5

# the outputs this process holds, and how many times: entering again costs nothing
_held: dict[str, int] = {}
_guard = threading.Lock()


class LakeLock:
    """The lock of the output ``out`` (a directory or a pyarrow.fs URI). ``wait=False`` raises
    ``LakeLockedError`` naming its holder when another command holds it; ``create=False`` on a
    local directory that does not exist takes no lock (there is no table to commit to)."""

    def __init__(self, out: str, *, wait: bool = True, create: bool = True, what: str = "a command") -> None:
        self.out = out
        self.remote = "://" in out
        self.key = out.split("?", 1)[0].rstrip("/") if self.remote else os.path.abspath(out)
        self.wait, self.create, self.what = wait, create, what
        self._fd: int | None = None
        self._lease: _Lease | None = None
        self._entered = False

    def __enter__(self) -> LakeLock:
        with _guard:
            if _held.get(self.key):
                _held[self.key] += 1
                self._entered = True
                return self
        if self.remote:
            self._lease = _Lease(self.out, self.what)
            self._lease.take(wait=self.wait)
        else:
            self._fd = self._flock()
        with _guard:
            _held[self.key] = _held.get(self.key, 0) + 1
        self._entered = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._entered:
            return
        self._entered = False
        with _guard:
            _held[self.key] -= 1
            if _held[self.key]:
                return
            del _held[self.key]
        if self._lease is not None:
            self._lease.free()
            self._lease = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def _flock(self) -> int | None:
        if not os.path.isdir(self.key):
            if not self.create:
                return None
            os.makedirs(self.key, exist_ok=True)
        path = os.path.join(self.key, LOCK_FILE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another command"
                if not self.wait:
                    raise LakeLockedError(f"the output {self.key} is locked by {holder}") from None
                log.info("waiting for the output %s, locked by %s", self.key, holder,
                         extra={"event": "lake_lock_wait", "fields": {"holder": holder}})  # fmt: skip
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        # who holds it, for the message of whoever waits (the flock itself is the lock)
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder(self.what).encode(), 0)
        return fd


def _holder(what: str) -> str:
    return f"{what} (pid {os.getpid()} on {socket.gethostname()})"


class _Lease:
    """The S3 lease: commits of the lock table, taken, renewed and freed conditionally."""

    def __init__(self, out: str, what: str) -> None:
        from syncstream.lake.delta import location  # noqa: PLC0415 (delta-rs)

        self.where = location(out, LOCK_TABLE)
        self.holder = _holder(what)
        self.id = f"{self.holder} {time.time_ns()}"
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.lost = False

    def _head(self) -> tuple[object, dict[str, object]]:
        from deltalake import DeltaTable, Field, Schema  # noqa: PLC0415
        from deltalake.exceptions import CommitFailedError, TableNotFoundError  # noqa: PLC0415
        from deltalake.schema import PrimitiveType  # noqa: PLC0415

        try:
            table = DeltaTable(self.where.uri, storage_options=self.where.storage_options)
        except TableNotFoundError:
            schema = Schema([Field("holder", PrimitiveType("string"), nullable=True)])
            with contextlib.suppress(CommitFailedError):  # another taker created it meanwhile
                DeltaTable.create(
                    self.where.uri,
                    schema,
                    mode="ignore",
                    storage_options=self.where.storage_options,
                    configuration={"delta.logRetentionDuration": "interval 1 day"},
                )
            table = DeltaTable(self.where.uri, storage_options=self.where.storage_options)
        head = table.history(1)[0]
        state = head.get(_MARK)
        return table, json.loads(state) if isinstance(state, str) else {}

    def _commit(self, table: object, state: dict[str, object]) -> bool:
        """Commit ``state`` as the version after the one ``table`` read; False when another
        commit took that version first (no retry: the caller reads the lease again)."""
        from deltalake import CommitProperties, DeltaTable  # noqa: PLC0415
        from deltalake.exceptions import CommitFailedError  # noqa: PLC0415

        assert isinstance(table, DeltaTable)
        try:
            table.create_write_transaction(
                [],
                "append",
                table.schema(),
                commit_properties=CommitProperties(
                    custom_metadata={_MARK: json.dumps(state)}, max_commit_retries=0
                ),
            )
        except CommitFailedError:
            return False
        return True

    def take(self, *, wait: bool) -> None:
        told = False
        while True:
            table, state = self._head()
            free = state.get("state") != "held" or float(str(state.get("until", 0))) < time.time()
            if free or state.get("id") == self.id:
                if self._commit(table, self._state("held")):
                    break
                continue
            if not wait:
                raise LakeLockedError(f"the output {self.where.uri} is locked by {state.get('holder')}")
            if not told:
                holder = str(state.get("holder"))
                log.info("waiting for the output %s, leased by %s", self.where.uri, holder,
                         extra={"event": "lake_lock_wait", "fields": {"holder": holder}})  # fmt: skip
                told = True
            time.sleep(_POLL_SECONDS)
        self._renewer = threading.Thread(target=self._renew, name="lake-lease", daemon=True)
        self._renewer.start()

    def _state(self, held: str) -> dict[str, object]:
        return {"state": held, "id": self.id, "holder": self.holder, "until": time.time() + LEASE_SECONDS}

    def _renew(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 4):
            try:
                table, state = self._head()
                if state.get("id") != self.id or state.get("state") != "held":
                    self.lost = True
                    log.error("the lease of the output %s was taken over by %s (this "
                              "command was stopped longer than a lease)",
                              self.where.uri, state.get("holder"))  # fmt: skip
                    return
                self._commit(table, self._state("held"))
            except Exception as error:  # a lost request: the next renewal tries again
                log.warning("the lease of the output %s could not be renewed: %s", self.where.uri, error)

    def free(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        for _ in range(10):
            table, state = self._head()
            if state.get("id") != self.id:
                return  # taken over already: not ours to free
            if self._commit(table, self._state("free")):
                return
