"""Stop requests: one a signal handler may raise, and the stop signals a command catches.

A ``threading.Event`` is not safe in a signal handler: ``set`` takes the lock that ``wait``
and ``clear`` hold for a moment, and a handler runs in the main thread, between two bytecodes
of whatever it was doing; a signal that lands while the main thread is inside ``wait`` makes the
handler wait for a lock its own thread holds, forever (``export --every`` was seen hung so on
SIGTERM). ``StopFlag.set`` takes no lock: it sets a bool and writes a byte to a pipe, which
wakes every ``wait``, in any thread.

``Stops`` is how every command catches SIGINT, SIGTERM and SIGHUP, from the start of its ``main``
until its process exits: a signal's default (death, or a ``KeyboardInterrupt`` between any two
bytecodes, even inside a frame half-written to a helper's pipe) would stop a command between two
steps of a protocol. Caught, a stop only sets a ``StopFlag``, which the command reads where
stopping is clean; a stop that comes after the last such point costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import weakref
from types import FrameType, TracebackType
from typing import Any, Protocol, Self

from syncstream.failpoints import failpoint

__all__ = ["STOP_SIGNALS", "StopFlag", "StopRequest", "Stops", "ignore_stops", "keep_until_exit"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

log = logging.getLogger("syncstream")


class StopRequest(Protocol):
    """What waits on a stop request reads of it (a ``StopFlag``; a ``threading.Event`` too)."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class StopFlag:
    """Set once, never cleared; safe to set from a signal handler and to wait on from any thread."""

    def __init__(self) -> None:
        self._set = False
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        weakref.finalize(self, _close, self._read, self._write)

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        # a full pipe holds earlier wake-ups: every waiter is awake already
        with contextlib.suppress(BlockingIOError):
            os.write(self._write, b"\0")

    def wait(self, timeout: float | None = None) -> bool:
        """Until the flag is set or ``timeout`` seconds have passed; whether it is set. A set
        between the check and the select leaves a byte in the pipe, so it is never missed."""
        if not self._set:
            select.select([self._read], [], [], timeout)
        return self._set


def _close(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


_kept = [False]  # whether the process is a command's: its handlers then stay until it exits


def keep_until_exit() -> None:
    """Leave a ``Stops``' handlers installed when its block ends (``cli.run``: the process is
    the command's), until ``ignore_stops``: a signal after the command's work, during its
    summary, then sets a flag nobody reads, instead of killing a process that did its work."""
    _kept[0] = True


def ignore_stops() -> None:
    """Ignore the stop signals from now on (``cli.run``, once ``main`` has returned: nothing is
    left to stop). The interpreter's finalization puts every Python handler back to the
    default, death, before pyarrow's and delta-rs' teardown; an ignored signal stays ignored."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


class Stops:
    """SIGINT, SIGTERM and SIGHUP caught for a command: each sets ``flag``, and is logged with
    what the command does about it (``stopping``, such as "finishing the export under way").

    ``hangup`` says what SIGHUP is: None for a stop like the others (the terminal is gone), else
    what the command does instead (logged; ``hangups`` counts them, for a command that re-reads
    its files, such as the live writer; others ignore it). The handler itself only sets the flag and writes
    the signal's number to a pipe: a thread logs it, as logging from a handler could re-enter a
    write to stderr that the signal interrupted (a ``RuntimeError``). Handlers are installed in
    the main thread only (elsewhere, as in a test calling a command's ``main`` from a thread,
    nothing sets the flag). The failpoints ``command.started`` and ``command.finished`` fire as
    the watch begins and ends: a stop sent there is the earliest and the latest one."""

    def __init__(self, stopping: str, *, hangup: str | None = None) -> None:
        self.flag = StopFlag()
        self.signal: str | None = None  # the first stop's name, for the command's own messages
        self.hangups = 0  # SIGHUPs that were not a stop (a counter: a handler may take no lock)
        self._stopping = stopping
        self._hangup = hangup
        self._previous: dict[int, Any] = {}
        self._write = -1  # the log thread's pipe, while handlers are installed

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            read, self._write = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(self._write, False)  # a handler must never wait
            threading.Thread(target=self._log, args=(read,), name="stop-signals", daemon=True).start()
            self._previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        failpoint("command.started")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        failpoint("command.finished")
        if not _kept[0] and self._previous:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
            os.close(self._write)  # the log thread reads the end of its pipe, and ends

    @property
    def requested(self) -> bool:
        return self.flag.is_set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP and self._hangup is not None:
            self.hangups += 1
        else:
            if self.signal is None:
                self.signal = signal.Signals(signum).name
            self.flag.set()
        with contextlib.suppress(OSError):  # a full pipe: the log thread is far behind, the flag is set
            os.write(self._write, bytes([signum]))

    def _log(self, fd: int) -> None:
        """Log each signal the handler received, until the end of the pipe."""
        stopped = False
        with open(fd, "rb", buffering=0) as pipe:
            while received := pipe.read(64):
                for signum in received:
                    name = signal.Signals(signum).name
                    if signum == signal.SIGHUP and self._hangup is not None:
                        log.info("%s: %s", name, self._hangup,
                                 extra={"event": "hangup", "fields": {"signal": name}})  # fmt: skip
                    elif not stopped:
                        stopped = True
                        log.info("%s: %s", name, self._stopping,
                                 extra={"event": "stopping", "fields": {"signal": name}})  # fmt: skip
