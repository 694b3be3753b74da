"""What an export reports: rows, files and bytes per dataset, and what it set aside or finished."""

from __future__ import annotations

import msgspec

from syncstream.purge.protocol import PurgeSummary

__all__ = ["DatasetSummary", "ExportSummary", "RecoveredRun"]


class DatasetSummary(msgspec.Struct, kw_only=True):
    rows: int = 0
    files: int = 0
    bytes: int = 0


class RecoveredRun(msgspec.Struct, kw_only=True):
    """A run an interrupted export recorded and this one committed: its rows, by dataset (its
    cache files were counted by the export that read them)."""

    claim: str
    rows: dict[str, int]


class ExportSummary(msgspec.Struct, kw_only=True):
    datasets: dict[str, DatasetSummary]
    cache_files: int = 0  # cache files read (and, unless kept, removed)
    duplicates: int = 0  # rows dropped as already exported or repeated within a batch
    unreadable: int = 0  # cache files that could not become a row (moved to .set-aside/)
    links_skipped: int = 0  # symbolic links inside the cache, left alone
    recovered_claims: int = 0  # claims or chunks left by an earlier export that this one finished
    batches: int = 0
    commits: int = 0  # table commits (at most one per table per run)
    erased: int = 0  # rows whose content a delete erased (every version of a deleted record)
    dry_run: bool = False
    purges: list[PurgeSummary] = msgspec.field(default_factory=list)  # run first: deleted accounts
    recovered_runs: list[RecoveredRun] = msgspec.field(default_factory=list)  # not in ``datasets``

    @property
    def rows(self) -> int:
        """The rows of the cache files this export read."""
        return sum(d.rows for d in self.datasets.values())

    def committed_rows(self) -> dict[str, int]:
        """Every row this export committed, by dataset: its own and its recovered runs'."""
        committed = {name: d.rows for name, d in self.datasets.items()}
        for run in self.recovered_runs:
            for name, rows in run.rows.items():
                committed[name] = committed.get(name, 0) + rows
        return committed
