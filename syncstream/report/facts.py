"""The numbers a report shows, gathered once from the store and the tables: the status object
(``syncstream status --json``'s), each table's rows by day, the verification outcomes, and the
backfills' and purges' history; and the study's record (the coverage rows, the membership
spells and withdrawals) the coverage timeline and the population over time are drawn from."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec

from syncstream.lake.inventory import TableFacts, column_counts, table_facts
from syncstream.status.gather import gather as status_of
from syncstream.status.options import StatusOptions
from syncstream.store import CoverageRow, StateStore, source_name
from syncstream.store.membership import Spell, Withdrawal

__all__ = ["ReportFacts", "coverage_spans", "dated", "gather", "population_steps"]


class ReportFacts(msgspec.Struct, frozen=True, kw_only=True):
    status: dict[str, Any]  # the status object, as ``syncstream status --json`` prints it
    tables: dict[str, TableFacts]
    verification: dict[str, dict[str, int]]  # table -> "true"/"false"/"null" -> rows
    backfills: list[tuple[float, str, int | None]]  # (when, status, records), oldest first
    purged: list[tuple[float, str]]  # (when, why) of each purged DID, oldest first
    coverage: list[CoverageRow]  # covered runs and gaps, as recorded
    spells: list[Spell]
    withdrawals: list[Withdrawal]
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
        coverage, spells = state.coverage.runs(), state.membership.spells()
        withdrawals = state.membership.withdrawals()
    return ReportFacts(
        status=status,
        tables=tables,
        verification={name: counts for name, counts in verification.items() if counts},
        backfills=backfills,
        purged=purged,
        coverage=coverage,
        spells=spells,
        withdrawals=withdrawals,
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


def coverage_spans(rows: list[CoverageRow]) -> list[tuple[str, str, int, int]]:
    """The coverage record as (source, kind, first seq, last seq), in the order recorded: the
    covered runs and the gaps the writer knows of (a row whose seqs are unknown is left out)."""
    return [
        (source_name(r.source), str(r.kind), r.first_seq, r.last_seq)
        for r in rows
        if r.first_seq is not None and r.last_seq is not None
    ]


def population_steps(spells: list[Spell]) -> dict[str, list[tuple[int, int]]]:
    """Each role's members over seqs, from the spells: (seq, members) at every seq where the
    count changes (a spell counts from its from_seq through its to_seq). A withdrawn account's
    spells are gone: the purge keeps only counts (``ReportFacts.withdrawals``)."""
    steps: dict[str, list[tuple[int, int]]] = {}
    for role in sorted({str(s.role) for s in spells}):
        change: dict[int, int] = {}
        for spell in (s for s in spells if str(s.role) == role):
            change[spell.from_seq] = change.get(spell.from_seq, 0) + 1
            if spell.to_seq is not None:
                change[spell.to_seq + 1] = change.get(spell.to_seq + 1, 0) - 1
        members, found = 0, []
        for seq in sorted(change):
            members += change[seq]
            found.append((seq, members))
        steps[role] = found
    return steps
