"""The export's metrics, as a node-exporter textfile (``--metrics-file``), written atomically
after each export, failed or not.

Counters count for the life of the file: each run adds its rows and files to what the file
held (a deleted file starts again from 0, which Prometheus reads as a counter reset). Every
dataset of the registry has its series, with 0 until it has rows, so that none vanishes in a
run without rows. The last success's time and the count of failures carry over the same way,
so that an alert on ``time() - syncstream_export_last_success_timestamp_seconds`` keeps working
across failures and restarts. No ``_created`` series: a textfile's counters are not a process's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["write_export_metrics"]

if TYPE_CHECKING:
    from syncstream.lake.compact import CompactSummary

_SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{dataset="(?P<dataset>[^"]*)"\})? (?P<value>\S+)$')


def _previous(path: str) -> dict[tuple[str, str], float]:
    """(metric, dataset or '') -> value, from the file as the last export left it."""
    found: dict[tuple[str, str], float] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                sample = _SAMPLE.match(line.strip())
                if sample is not None:
                    try:
                        found[sample["name"], sample["dataset"] or ""] = float(sample["value"])
                    except ValueError:
                        continue
    except (OSError, UnicodeDecodeError):
        pass
    return found


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def write_export_metrics(
    path: str,
    *,
    success: bool,
    seconds: float,
    rows: dict[str, int],
    files: int,
    now: float,
    datasets: Iterable[str] = (),
    commits: int = 0,
    compaction: CompactSummary | None = None,
) -> None:
    """Write the metrics after an export of ``rows`` by dataset from ``files`` cache files in
    ``commits`` table commits; ``datasets`` are the registry's, each given a series.
    ``compaction``: the figures of a compaction run after this export (``export --every`` with
    ``--compact-every``); without one, the last compaction's figures carry over. ``OSError``
    when ``path`` cannot be written."""
    before = _previous(path)
    rows_name = "syncstream_export_rows_total"
    by_dataset = CounterMetricFamily(
        "syncstream_export_rows", "Rows written by exports, by dataset", labels=["dataset"]
    )
    for name in sorted(set(datasets) | set(rows) | {d for (n, d) in before if n == rows_name}):
        by_dataset.add_metric([name], before.get((rows_name, name), 0.0) + rows.get(name, 0))
    last = now if success else before.get(("syncstream_export_last_success_timestamp_seconds", ""), 0.0)
    failures = before.get(("syncstream_export_failures_total", ""), 0.0) + (0 if success else 1)
    files_total = before.get(("syncstream_export_files_total", ""), 0.0) + files
    families: list[Metric] = [
        by_dataset,
        CounterMetricFamily("syncstream_export_files", "Cache files exported", value=files_total),
        GaugeMetricFamily("syncstream_export_duration_seconds", "The last export's seconds", value=seconds),
        GaugeMetricFamily(
            "syncstream_export_last_success_timestamp_seconds", "When an export last succeeded (Unix time)",
            value=last,
        ),
        CounterMetricFamily("syncstream_export_failures", "Exports that failed", value=failures),
        GaugeMetricFamily(
            "syncstream_export_last_run_success", "1 when the last export succeeded", value=int(success)
        ),
        GaugeMetricFamily(
            "syncstream_export_table_commits", "Table commits of the last export (one per table per run)",
            value=commits,
        ),
        *_compaction_gauges(before, compaction, now),
    ]  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
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
    before: dict[tuple[str, str], float], compaction: CompactSummary | None, now: float
) -> list[Metric]:
    """The last compaction's figures: this run's, or those the file held."""
    found: list[Metric] = []
    for name, (help_text, field) in _COMPACTION.items():
        value = before.get((name, ""), 0.0) if compaction is None else float(getattr(compaction, field))
        found.append(GaugeMetricFamily(name, help_text, value=value))
    last = "syncstream_compact_last_success_timestamp_seconds"
    value = before.get((last, ""), 0.0) if compaction is None else now
    found.append(GaugeMetricFamily(last, "When a compaction last succeeded (Unix time)", value=value))
    return found
