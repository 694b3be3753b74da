"""The report's HTML: one page, its style inline, its images beside it by relative name, no
script and nothing fetched from anywhere, so it reads offline and from an e-mail attachment's
folder. Every figure has its numbers in a table under it."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from syncstream.cli import human_seconds
from syncstream.report.facts import ReportFacts, coverage_spans, population_steps
from syncstream.report.plots import PLOTS
from syncstream.status.sections import iso

__all__ = ["render"]

_STYLE = """
body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.6rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #ddd; }
.note { color: #555; font-size: 0.9rem; }
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _table(table_id: str, head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{v:,}</td>' if isinstance(v, int) else f"<td>{_e(v)}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>'


def _glance(facts: ReportFacts) -> str:
    status = facts.status
    export = status["last_export"]
    lag = status["lag_seconds"]
    rows: list[tuple[str, object]] = [
        ("cursor", ", ".join(f"{s} {q}" for s, q in status["cursor"].items()) or "none"),
        ("lag behind the relay (newest row exported)", "unknown" if lag is None else human_seconds(lag)),
        ("study users", status["study_users"]),
        ("in-network users", status["in_network_users"]),
        ("withdrawn", status["withdrawn"]),
        ("pending purges", status["pending_purges"]),
        ("accounts with a verified chain", status["verified_accounts"]),
        ("last export", "never" if export is None else f"{export['time']} (run {export['run']})"),
        *((f"backfills {k}", v) for k, v in status["backfills"].items()),
    ]
    return _table("glance", ("what", "value"), rows)


def _tables(facts: ReportFacts) -> str:
    rows = [
        (
            name,
            fact.rows,
            fact.files,
            min(fact.rows_by_day, default="-"),
            max(fact.rows_by_day, default="-"),
        )
        for name, fact in sorted(facts.tables.items())
    ]
    if not rows:
        return '<p class="note">No table under the output yet: run <code>syncstream export</code>.</p>'
    return _table("tables", ("table", "rows", "files", "first day", "last day"), rows)


def _figure_data(name: str, facts: ReportFacts) -> str:
    """The numbers a figure shows, as a table under it."""
    if name == "rows_per_day.png":
        rows = [
            (day, table, rows)
            for table, fact in sorted(facts.tables.items())
            for day, rows in fact.rows_by_day.items()
        ]
        return _table("rows-per-day", ("day", "table", "rows"), sorted(rows))
    if name == "coverage.png":
        spans = coverage_spans(facts.coverage)
        gaps = [f"{source} {first}-{last}" for source, kind, first, last in spans if kind == "gap"]
        return (
            f'<p id="coverage-gaps">{len(gaps)} gaps in {len(spans)} coverage rows'
            + (f": {_e(', '.join(gaps))}" if gaps else "")
            + ".</p>"
            + _table("coverage", ("source", "kind", "first seq", "last seq"), spans)
        )
    if name == "population.png":
        members = [
            (role, seq, n) for role, points in population_steps(facts.spells).items() for seq, n in points
        ]
        withdrawn = [(iso(w.withdrawn_at), str(w.role), str(w.reason), w.accounts) for w in facts.withdrawals]
        return _table("population", ("role", "from seq", "members"), members) + _table(
            "withdrawals", ("withdrawn at", "role", "why", "accounts"), withdrawn
        )
    if name == "verification.png":
        outcomes = [
            (t, c.get("true", 0), c.get("false", 0), c.get("null", 0))
            for t, c in sorted(facts.verification.items())
        ]
        return _table("verification", ("table", "verified", "not verified", "not checked"), outcomes)
    counts = facts.status["backfills"]
    return _table("backfills", ("status", "DIDs"), sorted(counts.items()))


def render(facts: ReportFacts) -> str:
    status = facts.status
    outputs = ", ".join(status["outputs"])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>syncstream report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>syncstream report</h1>",
        f'<p class="note">Generated {_e(iso(facts.generated))} by syncstream {_e(status["version"])} '
        f"from the store {_e(status['state'])} and the tables under {_e(outputs)}.</p>",
        "<h2>At a glance</h2>",
        _glance(facts),
        "<h2>Tables</h2>",
        _tables(facts),
    ]
    for name, (title, _) in PLOTS.items():
        parts += [
            f"<h2>{_e(title)}</h2>",
            f'<img src="{_e(name)}" alt="{_e(title)}" width="900" height="400">',
            _figure_data(name, facts),
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
