"""A stop request that a signal handler may raise.

A ``threading.Event`` is not safe in a signal handler: ``set`` takes the lock that ``wait``
and ``clear`` hold for a moment, and a handler runs in the main thread, between two bytecodes
of whatever it was doing; a signal that lands while the main thread is inside ``wait`` makes the
handler wait for a lock its own thread holds, forever (``export --every`` was seen hung so on
SIGTERM). ``StopFlag.set`` takes no lock: it sets a bool and writes a byte to a pipe, which
wakes every ``wait``, in any thread.
"""

from __future__ import annotations

import contextlib
import os
import select
import weakref
from typing import Protocol

__all__ = ["StopFlag", "StopRequest"]


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
