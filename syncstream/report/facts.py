"""The numbers a report shows, gathered once from the store and the tables: the status object
(``syncstream status --json``'s), each table's rows by day, the verification outcomes, and the
backfills' and purges' history.

Coverage and membership come from what this store records today: coverage is derived from the
days that hold rows (``coverage_days``), the population over time from the current population
and the purges. ``coverage_days`` and ``population_steps`` are the two functions to change once
the store records coverage runs and membership spells."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec

from syncstream.lake.inventory import TableFacts, column_counts, table_facts
from syncstream.status.gather import gather as status_of
from syncstream.status.options import StatusOptions
from syncstream.store import StateStore

__all__ = ["ReportFacts", "coverage_days", "dated", "gather", "population_steps"]


class ReportFacts(msgspec.Struct, frozen=True, kw_only=True):
    status: dict[str, Any]  # the status object, as ``syncstream status --json`` prints it
    tables: dict[str, TableFacts]
    verification: dict[str, dict[str, int]]  # table -> "true"/"false"/"null" -> rows
    backfills: list[tuple[float, str, int | None]]  # (when, status, records), oldest first
    purged: list[tuple[float, str]]  # (when, why) of each purged DID, oldest first
    generated: float


def gather(state_path: str, out: str, handlers: str | None, now: float) -> ReportFacts:
    """Everything the report shows; ``ConfigError`` for a state that is missing or not a store."""
    status = status_of(StatusOptions(state=state_path, out=out, handlers=handlers), now)
    names = set(status["tables"] or ())
    tables = table_facts(out, names)
    verification = {name: dict(column_counts(out, fact, "verified")) for name, fact in tables.items()}
    with StateStore(state_path, create=False) as state:
        backfills = [(when, str(kind), records) for when, kind, records in state.backfills.history()]
        purged = state.population.purged_history()
    return ReportFacts(
        status=status,
        tables=tables,
        verification={name: counts for name, counts in verification.items() if counts},
        backfills=backfills,
        purged=purged,
        generated=now,
    )


def dated(rows_by_day: dict[str, int]) -> list[tuple[datetime.date, int]]:
    """A table's rows by day as dates; a file with no partition_date (``None``: no export
    writes one, but a table is anyone's to append to) has no day to be drawn at."""
    found = []
    for day, rows in rows_by_day.items():
        try:
            found.append((datetime.date.fromisoformat(day), rows))
        except ValueError:
            continue
    return found


def coverage_days(tables: dict[str, TableFacts]) -> list[tuple[datetime.date, int]]:
    """Each day from the first partition to the last with the rows all tables received that day
    (derived: a day with none is a gap in what was collected, or a quiet day)."""
    totals: dict[datetime.date, int] = {}
    for fact in tables.values():
        for date, rows in dated(fact.rows_by_day):
            totals[date] = totals.get(date, 0) + rows
    if not totals:
        return []
    first, last = min(totals), max(totals)
    days = (last - first).days + 1
    return [
        (first + datetime.timedelta(days=i), totals.get(first + datetime.timedelta(days=i), 0))
        for i in range(days)
    ]


def population_steps(facts: ReportFacts) -> list[tuple[float, int]]:
    """The population (study and in-network users) over time, derived: everyone enrolled now,
    plus each purged DID until it was purged; a (time, members) step at each purge and now."""
    members = facts.status["study_users"] + facts.status["in_network_users"] + len(facts.purged)
    days = [day for fact in facts.tables.values() for day, _ in dated(fact.rows_by_day)]
    first_day = (
        datetime.datetime.combine(min(days), datetime.time(), datetime.UTC).timestamp() if days else None
    )
    known = [t for t in (first_day, facts.purged[0][0] if facts.purged else None) if t is not None]
    start = min([*known, facts.generated - 86_400.0])  # a day at least: a line, not a point
    steps = [(start, members)]
    for when, _ in facts.purged:
        members -= 1
        steps.append((when, members))
    steps.append((facts.generated, members))
    return steps
