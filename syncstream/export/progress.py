"""The export's progress line, every ``--progress-seconds`` and once at the end: totals so far
(batches, cache files, rows, bytes of Parquet, set aside) and rates since the start."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from syncstream.cli import human_seconds

if TYPE_CHECKING:
    from syncstream.export.summary import ExportSummary

__all__ = ["ExportProgress"]

log = logging.getLogger("syncstream.export")


class ExportProgress:
    """Called with the summary after every batch (``export_batch(progress=...)``); logs when a
    line is due, and ``done`` logs the last one."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = self._last = time.monotonic()

    def __call__(self, summary: ExportSummary) -> None:
        if time.monotonic() - self._last >= self.seconds:
            self._line(summary, "progress")

    def done(self, summary: ExportSummary) -> None:
        self._line(summary, "done")

    def _line(self, summary: ExportSummary, stage: str) -> None:
        now = time.monotonic()
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        written = sum(d.bytes for d in summary.datasets.values())
        fields = {
            "stage": stage,
            "batches": summary.batches,
            "files": summary.cache_files,
            "rows": summary.rows,
            "bytes": written,
            "set_aside": summary.unreadable,
            "seconds": round(elapsed, 3),
            "files_per_second": round(summary.cache_files / elapsed, 1),
            "rows_per_second": round(summary.rows / elapsed, 1),
        }
        log.info(
            "%s: %s batches, %s cache files, %s rows, %.1f MiB of Parquet in %s (%s files/s, %s rows/s)",
            stage, f"{summary.batches:,}", f"{summary.cache_files:,}", f"{summary.rows:,}", written / 2**20,
            human_seconds(elapsed), f"{fields['files_per_second']:,.0f}", f"{fields['rows_per_second']:,.0f}",
            extra={"event": "progress", "fields": fields},
        )  # fmt: skip
