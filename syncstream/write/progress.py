"""The writer's progress line, every ``--progress-seconds``, for a replay as for a relay: the
rate since the last line, the totals so far, the seq and the lag behind the event time."""

from __future__ import annotations

import logging
from collections.abc import Callable

from syncstream.cli import human_seconds
from syncstream.clock import SYSTEM_CLOCK, Clock
from syncstream.write.writer import CacheWriter

__all__ = ["Progress", "counts"]

log = logging.getLogger("syncstream.write")


def counts(values: dict[str, int]) -> str:
    """``{"commit": 148, "identity": 1}`` -> ``149 (commit 148, identity 1)``."""
    inner = ", ".join(f"{name} {count:,}" for name, count in sorted(values.items()))
    return f"{sum(values.values()):,}" + (f" ({inner})" if inner else "")


def _listed(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{name} {count}" for name, count in value.items())
    return str(value)


class Progress:
    """Logs a progress line when ``tick`` finds one due (every ``seconds``)."""

    def __init__(
        self,
        writer: CacheWriter,
        seconds: float,
        *,
        extra: Callable[[], dict[str, object]] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.writer, self.seconds = writer, seconds
        self.extra = extra  # more fields (the background backfills)
        self._clock = clock
        self._since = clock.monotonic()
        self._frames_then = self._frames()
        self.lines = 0

    def _frames(self) -> int:
        return sum(self.writer.frames.values()) + self.writer.skipped

    def tick(self) -> None:
        now = self._clock.monotonic()
        if now - self._since >= self.seconds:
            self.emit(now)

    def emit(self, now: float) -> None:
        writer = self.writer
        frames = self._frames()
        seconds = now - self._since
        lag = writer.event_lag()
        fields: dict[str, object] = {
            "frames_per_second": round((frames - self._frames_then) / seconds, 1) if seconds else 0.0,
            "frames_total": frames,
            "frames": dict(writer.frames),
            "files": sum(writer.files.values()),
            "rejections": sum(writer.rejections.values()),
            "seq": writer.last_seq,
            "lag_seconds": None if lag is None else round(lag, 3),
        }
        extra = self.extra() if self.extra is not None else {}
        fields.update(extra)
        log.info(
            "%s frames/s | frames %s | files %s | rejections %s | seq %s | lag %s%s",
            f"{fields['frames_per_second']:,.0f}", counts(writer.frames), f"{fields['files']:,}",
            f"{fields['rejections']:,}", writer.last_seq, "?" if lag is None else human_seconds(lag),
            "".join(f" | {name} {_listed(value)}" for name, value in extra.items()),
            extra={"event": "progress", "fields": fields},
        )  # fmt: skip
        self._since, self._frames_then = now, frames
        self.lines += 1
