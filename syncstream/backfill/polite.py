"""Politeness towards PDSes: per host, a bound on concurrent ``getRepo`` calls, a token bucket
(Bluesky's PDSes allow 3,000 per 5 minutes and answer 429 past that), and a pause that honours
429 answers and ``RateLimit-*`` headers (``RateLimit-Remaining: 0`` pauses until
``RateLimit-Reset``; a 429 without headers backs off exponentially). Waits and 429s are counted.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from syncstream.clock import SYSTEM_CLOCK, Clock
from syncstream.errors import SyncstreamError
from syncstream.signals import StopRequest

__all__ = ["HostGate", "Waited", "reset_delay"]

_EPOCH_THRESHOLD = 1_000_000_000  # a RateLimit-Reset this large is a Unix time, else seconds


class Waited(SyncstreamError):
    """The wait for a host would pass the caller's deadline (or a stop was asked for)."""


def reset_delay(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until the host's limit resets, from ``Retry-After`` or ``RateLimit-Reset``
    (Bluesky sends a Unix time; the IETF draft, seconds), or None when neither says."""
    for name in ("retry-after", "ratelimit-reset"):
        text = headers.get(name)
        if text is None:
            continue
        try:
            value = float(text)
        except ValueError:
            continue
        return max(0.0, value - now if value >= _EPOCH_THRESHOLD else value)
    return None


class _Host:
    def __init__(self, concurrency: int, calls: int, now: float) -> None:
        self.slots = threading.BoundedSemaphore(concurrency)
        self.tokens = float(calls)
        self.filled = now
        self.paused_until = 0.0  # monotonic
        self.backoff = 0  # 429s in a row without a reset time


class HostGate:
    """Admits ``getRepo`` calls per host: ``concurrency`` at once, ``calls`` per ``period``
    (seconds of ``clock``)."""

    def __init__(
        self, *, concurrency: int = 4, calls: int = 3000, period: float = 300.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.concurrency, self.calls, self.period = concurrency, calls, period
        self.clock = clock
        self._hosts: dict[str, _Host] = {}
        self._lock = threading.Lock()
        self.waits = 0  # calls that had to wait
        self.wait_seconds = 0.0
        self.rate_limited = 0  # 429 answers

    def _host(self, host: str) -> _Host:
        with self._lock:
            state = self._hosts.get(host)
            if state is None:
                state = self._hosts[host] = _Host(self.concurrency, self.calls, self.clock.monotonic())
            return state

    def acquire(self, host: str, deadline: float, stop: StopRequest) -> None:
        """Wait for a slot and a token of ``host``; ``Waited`` when that passes ``deadline``
        (on the clock's monotonic time) or a stop is asked for. Pair with ``release``."""
        state = self._host(host)
        clock = self.clock
        started = clock.monotonic()
        try:
            while True:
                if stop.is_set():
                    raise Waited("stopping")
                if clock.monotonic() >= deadline:
                    raise Waited(
                        f"waited {clock.monotonic() - started:.1f}s for a turn at {host} ({self.concurrency} "
                        f"at once, {self.calls} calls per {self.period:g}s, 429 pauses)"
                    )
                if state.slots.acquire(timeout=0.05):
                    delay = self._take(state)
                    if delay <= 0:
                        return
                    state.slots.release()
                    clock.wait(stop, min(delay, 0.25, max(deadline - clock.monotonic(), 0.0)))
        finally:
            waited = clock.monotonic() - started
            if waited > 0.01:
                with self._lock:
                    self.waits += 1
                    self.wait_seconds += waited

    def _take(self, state: _Host) -> float:
        """0 when a token was taken, else how long until one may be."""
        with self._lock:
            now = self.clock.monotonic()
            if now < state.paused_until:
                return state.paused_until - now
            rate = self.calls / self.period
            state.tokens = min(float(self.calls), state.tokens + (now - state.filled) * rate)
            state.filled = now
            if state.tokens >= 1:
                state.tokens -= 1
                return 0.0
            return (1 - state.tokens) / rate

    def release(self, host: str) -> None:
        self._host(host).slots.release()

    def answered(self, host: str, status: int, headers: Mapping[str, str]) -> float:
        """Learn from an answer's status and headers; the pause now in force at ``host``."""
        state = self._host(host)
        delay = reset_delay(headers, self.clock.time())
        with self._lock:
            if status == 429:
                self.rate_limited += 1
                if delay is None:
                    state.backoff += 1
                    delay = min(2.0 ** (state.backoff - 1), 300.0)
            elif headers.get("ratelimit-remaining", "").strip() != "0":
                state.backoff = 0
                return 0.0
            if delay is None:
                return 0.0
            state.paused_until = max(state.paused_until, self.clock.monotonic() + delay)
            return delay

    def stats(self) -> dict[str, float]:
        with self._lock:
            return {"waits": self.waits, "wait_seconds": round(self.wait_seconds, 3),
                    "rate_limited": self.rate_limited}  # fmt: skip
