"""The sections of ``syncstream status``, each one small function of the store (or of the
tables under an output) returning plain values with the names the JSON object carries.

Coverage and membership are not recorded by this store's layout yet: ``coverage`` says so and
shows what the cursor alone tells; it is the one function to change once the store records
coverage runs and gaps."""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable
from typing import Any

from syncstream.store import CURSOR, BackfillStatus, StateStore
from syncstream.store.kinds import PurgeReason

__all__ = [
    "backfills",
    "coverage",
    "cursor",
    "handlers",
    "iso",
    "last_export",
    "population",
    "purges",
    "source_name",
    "verification",
]


def iso(seconds: float | None) -> str | None:
    """A UTC time as ISO 8601 with a Z, to the second."""
    if seconds is None:
        return None
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(microsecond=0)
    return when.isoformat().replace("+00:00", "Z")


def source_name(key: str) -> str:
    """A cursor's key as an operator names its source: the relay's host, or ``replay``."""
    return "replay" if key == CURSOR else key.removeprefix("cursor:")


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
    """``coverage``: the gaps in the seqs processed (how many, the largest). This store's
    layout records no coverage runs, so the gaps are unknown (null) and ``recorded`` is false;
    the seqs known processed reach each source's cursor."""
    return {
        "coverage": {
            "recorded": False,
            "gaps": None,
            "largest_gap": None,
            "through": {source_name(k): seq for k, seq in sorted(state.cursors.sources().items())},
        }
    }


def handlers(state: StateStore) -> dict[str, Any]:
    """The handlers that ever wrote to the cache and the datasets the export ever wrote: a
    registry without one of them is refused by every command."""
    written, datasets = state.written_by.names()
    return {"handlers": sorted(written), "datasets_written": sorted(datasets)}


def lag(newest_event: float | None, now: float) -> dict[str, Any]:
    """``lag_seconds``: now minus the relay's time of the newest event in the tables (null
    without tables to read)."""
    return {"lag_seconds": None if newest_event is None else round(now - newest_event, 3)}


def merged(parts: Iterable[dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in parts:
        found.update(part)
    return found
