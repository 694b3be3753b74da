"""The sections of ``syncstream status``, each one small function of the store (or of the
tables under an output) returning plain values with the names the JSON object carries."""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable
from typing import Any

from syncstream.store import BackfillStatus, StateStore
from syncstream.store.coverage import source_name
from syncstream.store.kinds import CoverageKind, PurgeReason

__all__ = [
    "backfills",
    "catalog",
    "coverage",
    "cursor",
    "handlers",
    "iso",
    "last_export",
    "population",
    "purges",
    "verification",
]


def iso(seconds: float | None) -> str | None:
    """A UTC time as ISO 8601 with a Z, to the second."""
    if seconds is None:
        return None
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(microsecond=0)
    return when.isoformat().replace("+00:00", "Z")


def cursor(state: StateStore) -> dict[str, Any]:
    """``cursor``: the last durable seq of each source (a relay by its host, ``replay``)."""
    return {"cursor": {source_name(key): seq for key, seq in sorted(state.cursors.sources().items())}}


def population(state: StateStore) -> dict[str, Any]:
    """The population: study and in-network users (those the user files list, and the accounts
    study users were seen following), and how many were purged for good, by reason."""
    current = state.population.current()
    tracked = state.population.current(tracked_follows=True)
    reasons = Counter(reason for _, reason in state.population.purged_history())
    return {
        "study_users": len(current.study),
        "in_network_users": len(current.in_network),
        "in_network_users_tracked": len(tracked.in_network),
        "withdrawn": reasons.get(PurgeReason.WITHDRAWAL, 0),
        "purged": dict(sorted(reasons.items())),
    }


def purges(state: StateStore) -> dict[str, Any]:
    """Accounts the writer saw deleted or taken down and the next export purges, and purges
    that began but did not finish (the next purge or export finishes them)."""
    records = state.purges.records()
    return {
        "pending_purges": len(state.purges.pending()),
        "unfinished_purges": sum(1 for r in records if r.finished_at is None),
        "purges": len(records),
    }


def backfills(state: StateStore) -> dict[str, Any]:
    """``backfills``: how many DIDs are done, failed (retried after a backoff) or pending (a
    #sync asked for the repository again)."""
    counts = Counter(b.status for b in state.backfills.recorded().values())
    return {"backfills": {str(status): counts.get(status, 0) for status in BackfillStatus}}


def verification(state: StateStore) -> dict[str, Any]:
    """``verified_accounts``: the accounts whose chain of verified commits the store keeps (a
    commit of one that does not follow on from it is a resync)."""
    return {"verified_accounts": state.chains.count()}


def last_export(state: StateStore) -> dict[str, Any]:
    """``last_export``: when the last export committed, and its run's number (its tables'
    application transaction version); null before the first."""
    last = state.exports.last_run()
    if last is None:
        return {"last_export": None}
    when, run = last  # (not the store's id: drawing one takes a write lock, status only reads)
    return {"last_export": {"time": iso(when), "run": run}}


def coverage(state: StateStore) -> dict[str, Any]:
    """``coverage``, from the store's record: the covered runs and the gaps (the seqs the
    writer knows it lost), the largest gap (by seqs), and per source the last seq a covered
    run reached and the relay's time of its last frame (``last_time``)."""
    rows = state.coverage.runs()
    covered = [r for r in rows if r.kind == CoverageKind.COVERED and r.last_seq is not None]
    gaps = [
        r for r in rows if r.kind == CoverageKind.GAP and r.first_seq is not None and r.last_seq is not None
    ]
    largest = max(gaps, key=lambda r: (r.last_seq or 0) - (r.first_seq or 0), default=None)
    through: dict[str, int] = {}
    for row in covered:
        name = source_name(row.source)
        through[name] = max(through.get(name, row.last_seq or 0), row.last_seq or 0)
    sources = sorted({row.source for row in covered})
    return {
        "coverage": {
            "runs": len(covered),
            "gaps": len(gaps),
            "largest_gap": None
            if largest is None
            else {
                "source": source_name(largest.source),
                "first_seq": largest.first_seq,
                "last_seq": largest.last_seq,
                "seqs": (largest.last_seq or 0) - (largest.first_seq or 0) + 1,
                "from_time": largest.first_time,
                "to_time": largest.last_time,
            },
            "through": dict(sorted(through.items())),
            "last_time": {source_name(key): state.coverage.last_time(key) for key in sources},
        }
    }


def catalog(state: StateStore) -> dict[str, Any]:
    """``catalog``: the copies the store made outside itself besides its outputs (snapshots,
    ``--record`` files, backfill scratch directories still there), counted and located."""
    snapshots = state.catalog.snapshots()
    records = state.catalog.records()
    scratch = state.catalog.scratch()
    return {
        "catalog": {
            "snapshots": {"count": len(snapshots), "locations": [s.location for s in snapshots]},
            "records": {"count": len(records), "locations": [r.location for r in records]},
            "scratch": {"count": len(scratch), "locations": [s.location for s in scratch]},
        }
    }


def handlers(state: StateStore) -> dict[str, Any]:
    """The handlers that ever wrote to the cache and the datasets the export ever wrote: a
    registry without one of them is refused by every command."""
    written, datasets = state.written_by.names()
    return {"handlers": sorted(written), "datasets_written": sorted(datasets)}


def lag(newest_event: float | None, now: float) -> dict[str, Any]:
    """``lag_seconds``: now minus the relay's time of the newest event (in the tables, or
    else the last frame coverage recorded); null when neither knows one."""
    return {"lag_seconds": None if newest_event is None else round(now - newest_event, 3)}


def last_covered(coverage: dict[str, Any]) -> float | None:
    """The relay's time of the newest frame any source's covered runs reached (seconds)."""
    times = [
        datetime.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in coverage["last_time"].values() if t
    ]
    aware = [t if t.tzinfo is not None else t.replace(tzinfo=datetime.UTC) for t in times]
    return max(aware).timestamp() if aware else None


def merged(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in parts:
        found.update(part)
    return found
