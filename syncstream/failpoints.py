"""Named failpoints: a test makes a process crash, fail or exit at an exact step of a protocol.

``SYNCSTREAM_FAILPOINTS="point:hit:action[,point:hit:action...]"`` arms them, in every process
of a command (helpers inherit the environment). ``point`` is one of ``POINTS``, optionally
prefixed by the process it must fire in (``export-helper/export.parquet_temp``); ``hit`` is the
pass through that point, counted from 1 in each process, at which it fires; ``action`` is

- ``kill``: SIGKILL this process (a helper dies alone; a command's helpers die with it),
- ``raise``: raise ``FailpointError`` (a clean failure, as a full disk or a bug would raise),
- ``exit``: ``os._exit(3)``, no clean-up (an exit from a library or a signal handler),
- ``stop``: SIGSTOP this process (a test forces an interleaving, then sends SIGCONT),
- ``term``, ``hup``, ``int``: SIGTERM, SIGHUP or SIGINT to this process's whole process group,
  as a service manager's stop (systemd's default), a terminal's hangup or a Ctrl-C sends it, and
  go on (run the command in a session of its own: ``start_new_session=True``).

Unset, ``failpoint`` is a dictionary lookup that finds nothing: free on every path but the
hottest loops, which check ``ARMED`` first.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

from syncstream.errors import ConfigError, FailpointError

__all__ = [
    "ACTIONS",
    "ARMED",
    "ENV",
    "POINTS",
    "PROBLEM",
    "PROCESSES",
    "failpoint",
    "parse_spec",
    "set_process",
]

ENV = "SYNCSTREAM_FAILPOINTS"
ACTIONS = ("kill", "raise", "exit", "term", "hup", "int", "stop")
_SIGNALS = {"term": signal.SIGTERM, "hup": signal.SIGHUP, "int": signal.SIGINT}

_COMMANDS = ("writer", "export", "purge", "backfill", "compact", "snapshot", "relay", "pds")
# Each point (``syncstream.staging.Step`` names those of the export and the purge), and the
# processes it can fire in: the command's own process, its helper, or
# the command run with its helper's work done inline (``--inline-writes``, ``--inline-parquet``).
POINTS: Mapping[str, tuple[str, ...]] = {
    # the writer: routed writes handed over, each file in place, a batch durable, its cursor stored
    "write.batch_sent": ("writer",),
    "write.file_written": ("write-helper", "writer-inline"),
    "write.files_durable": ("writer", "writer-inline"),
    "write.cursor_stored": ("writer", "writer-inline"),
    # the export: claim, list, record, write, commit, remove, forget
    "export.claim_manifest": ("export", "export-inline"),
    "export.claim_rename": ("export", "export-inline"),
    "export.chunk_listed": ("export", "export-inline"),
    "export.outputs_recorded": ("export", "export-inline"),
    "export.parquet_temp": ("export-helper", "export-inline"),
    "export.parquet_placed": ("export-helper", "export-inline"),
    # a run: recorded (it will commit), each table's commit, then the keys in the state
    "export.run_recorded": ("export", "export-inline"),
    "export.table_committed": ("export", "export-inline"),
    # then, in each table with deletes, their records' content erased (a commit) and vacuumed
    "export.content_erased": ("erase-helper", "export-inline"),
    "export.erase_vacuumed": ("erase-helper", "export-inline"),
    "export.committed": ("export", "export-inline"),
    # The command's own process removes a slice too when its helper has a backlog; it runs the
    # same function as the helper, so the points fire there as well (not deterministically).
    "export.removing": ("export-helper", "export-inline"),
    "export.bookkeeping_removed": ("export-helper", "export-inline"),
    "export.claim_removed": ("export", "export-inline"),
    # the study's record (coverage, membership): a table's rows replaced, then the files it
    # replaced vacuumed (before the record's digest is noted in the state)
    "export.record_written": ("export", "export-inline"),
    "export.record_committed": ("export", "export-inline"),
    # a purge: recorded (the population changed), cache files removed, each Parquet file
    # rewritten and then the old one removed, the purge recorded done
    "purge.begun": ("purge",),
    "purge.cache_removed": ("purge",),
    "purge.part_written": ("purge",),
    "purge.part_replaced": ("purge",),
    # a Delta table: the rows deleted (one commit), then the files it replaced vacuumed
    "purge.table_rewritten": ("purge",),  # the files written, the commit not made
    "purge.table_deleted": ("purge",),
    "purge.vacuumed": ("purge",),
    "purge.finished": ("purge",),
    # a compaction (``compact``, or ``export --compact-every``): a table read, its lock held
    "compact.table_read": ("compact", "export", "export-inline"),
    # a backfill: a batch of a repository's records written, then the repository's files
    # durable (before the DID is recorded done)
    "backfill.batch_written": ("backfill",),
    "backfill.files_durable": ("backfill",),
    # every command (syncstream.signals.Stops): its stop signals caught, and its work done; a
    # compaction's partition committed, a snapshot's dataset copied
    "command.started": _COMMANDS,
    "command.finished": _COMMANDS,
    "compact.partition_done": ("compact",),
    "snapshot.dataset_copied": ("snapshot",),
}
PROCESSES = (
    "writer",
    "writer-inline",
    "write-helper",
    "export",
    "export-inline",
    "export-helper",
    "erase-helper",
    "purge",
    "backfill",
    "compact",
    "snapshot",
    "relay",
    "pds",
)

_process = "main"


def set_process(name: str) -> None:
    """Name this process for failpoints that say which process they fire in."""
    global _process
    _process = name


def parse_spec(text: str) -> dict[str, list[tuple[str | None, int, str]]]:
    """A ``SYNCSTREAM_FAILPOINTS`` value, point -> [(process or None, hit, action)]; a
    ``ConfigError`` names an item that is not ``[process/]point:hit:action``."""
    armed: dict[str, list[tuple[str | None, int, str]]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            where, hit_text, action = item.rsplit(":", 2)
            hit = int(hit_text)
        except ValueError:
            raise ConfigError(f"{ENV}: {item!r} is not point:hit:action") from None
        process, _, point = where.rpartition("/")
        if point not in POINTS:
            raise ConfigError(f"{ENV}: unknown failpoint {point!r} (known: {', '.join(POINTS)})")
        if process and process not in PROCESSES:
            raise ConfigError(f"{ENV}: unknown process {process!r} (known: {', '.join(PROCESSES)})")
        if action not in ACTIONS or hit < 1:
            raise ConfigError(f"{ENV}: {item!r}: the action is one of {ACTIONS}, the hit at least 1")
        armed.setdefault(point, []).append((process or None, hit, action))
    return armed


try:
    _ARMED = parse_spec(os.environ.get(ENV, ""))
    PROBLEM: str | None = None
except ConfigError as _error:  # a command says so in one error line (cli.environment_problem)
    _ARMED, PROBLEM = {}, str(_error)
ARMED = bool(_ARMED)
_hits: dict[str, int] = {}


def failpoint(point: str) -> None:
    """Pass through ``point``: fire it if it is armed for this process and this pass."""
    specs = _ARMED.get(point)
    if specs is None:
        return
    count = _hits[point] = _hits.get(point, 0) + 1
    for process, hit, action in specs:
        if hit == count and process in (None, _process):
            _fire(point, action)


def _fire(point: str, action: str) -> None:
    if action in _SIGNALS:
        os.killpg(os.getpgrp(), _SIGNALS[action])
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)  # returns once a SIGCONT comes
        return
    if action == "exit":
        os._exit(3)
    raise FailpointError(f"failpoint {point} ({_process})")
