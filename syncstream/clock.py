"""Time as a collaborator: code that waits on the clock (a token bucket, a 429 pause, a
deadline) takes a ``Clock``, the system's by default, so that a test drives time instead of
sleeping through it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from syncstream.signals import StopRequest

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals and deadlines)."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch (for times other hosts send, like ``RateLimit-Reset``)."""
        ...

    def wait(self, event: StopRequest, seconds: float) -> bool:
        """Until ``event`` is set or ``seconds`` have passed; whether it was set."""
        ...


class SystemClock:
    """The system's clocks; a wait is the event's own."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def wait(self, event: StopRequest, seconds: float) -> bool:
        return event.wait(seconds)


SYSTEM_CLOCK: Clock = SystemClock()
