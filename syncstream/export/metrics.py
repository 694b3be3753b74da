"""The export's metrics, as a node-exporter textfile (``--metrics-file``), written atomically
after each export, failed or not.

The last success's time and the count of failures carry over from the file itself, so that an
alert on ``time() - syncstream_export_last_success_timestamp_seconds`` keeps working across
failures and restarts.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, write_to_textfile

__all__ = ["parse_duration", "write_export_metrics"]

if TYPE_CHECKING:
    from syncstream.compact import CompactSummary

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``1d`` -> seconds; ``ValueError`` otherwise."""
    found = _DURATION.fullmatch(text.strip())
    if found is None or float(found.group(1)) <= 0:
        raise ValueError(f"expected a positive duration such as 90s, 15m, 1h or 1d, got {text!r}")
    return float(found.group(1)) * _UNIT[found.group(2)]


def _previous(path: str, name: str) -> float:
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(f"{name} "):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def write_export_metrics(
    path: str,
    *,
    success: bool,
    seconds: float,
    rows: dict[str, int],
    files: int,
    now: float,
    commits: int = 0,
    compaction: CompactSummary | None = None,
) -> None:
    """``compaction``: the figures of a compaction run after this export (``export --every``
    with ``--compact-every``); without one, the last compaction's figures carry over."""
    registry = CollectorRegistry()
    Gauge(
        "syncstream_export_table_commits", "Table commits of the last export (one per table per run)",
        registry=registry,
    ).set(commits)  # fmt: skip
    _compaction_gauges(registry, path, compaction, now)
    by_dataset = Counter(
        "syncstream_export_rows",
        "Rows written by the last export, by dataset",
        ["dataset"],
        registry=registry,
    )
    for dataset, count in sorted(rows.items()):
        by_dataset.labels(dataset).inc(count)
    Counter("syncstream_export_files", "Cache files exported by the last export", registry=registry).inc(
        files
    )
    Gauge("syncstream_export_duration_seconds", "How long the last export took", registry=registry).set(
        seconds
    )
    last = now if success else _previous(path, "syncstream_export_last_success_timestamp_seconds")
    Gauge(
        "syncstream_export_last_success_timestamp_seconds", "When an export last succeeded (Unix time)",
        registry=registry,
    ).set(last)  # fmt: skip
    failures = _previous(path, "syncstream_export_failures_total") + (0 if success else 1)
    Counter("syncstream_export_failures", "Exports that failed", registry=registry).inc(failures)
    Gauge("syncstream_export_last_run_success", "1 when the last export succeeded", registry=registry).set(
        1 if success else 0
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_to_textfile(path, registry)  # a temporary beside it, renamed over it


_COMPACTION = {
    "syncstream_compact_partitions": ("Closed partitions the last compaction rewrote", "partitions"),
    "syncstream_compact_files_removed": ("Files the last compaction replaced", "files_removed"),
    "syncstream_compact_files_added": ("Files the last compaction wrote", "files_added"),
    "syncstream_compact_vacuumed_files": ("Files the last compaction's vacuum removed", "vacuumed"),
    "syncstream_compact_duration_seconds": ("How long the last compaction took", "seconds"),
}


def _compaction_gauges(
    registry: CollectorRegistry, path: str, compaction: CompactSummary | None, now: float
) -> None:
    for name, (help_text, field) in _COMPACTION.items():
        value = _previous(path, name) if compaction is None else float(getattr(compaction, field))
        Gauge(name, help_text, registry=registry).set(value)
    last = "syncstream_compact_last_success_timestamp_seconds"
    Gauge(last, "When a compaction last succeeded (Unix time)", registry=registry).set(
        _previous(path, last) if compaction is None else now
    )
