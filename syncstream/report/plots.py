"""The report's figures, one function each: ``facts`` in, a PNG at ``path`` out. Drawn with
matplotlib's object API on the Agg canvas (no pyplot, no display, no global state)."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from syncstream.report.facts import ReportFacts, coverage_spans, dated, population_steps

__all__ = ["PLOTS"]

_SIZE = (9.0, 4.0)


def _figure() -> Figure:
    figure = Figure(figsize=_SIZE, dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _empty(figure: Figure, note: str) -> None:
    axes = figure.subplots()
    axes.set_axis_off()
    axes.text(0.5, 0.5, note, ha="center", va="center", fontsize=14, color="#555555")


def _dates(axes: Axes, xs: list[float]) -> None:
    """A date axis; a day or a moment alone gets a day either side, not years of empty axis."""
    if xs and max(xs) - min(xs) < 1.0:
        axes.set_xlim(min(xs) - 1.0, max(xs) + 1.0)
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _days(days: list[datetime.date]) -> list[float]:
    """Days as matplotlib's date numbers (its typed API takes numbers; the axis shows dates)."""
    return [float(date2num(day)) for day in days]


def _times(seconds: list[float]) -> list[float]:
    return [float(date2num(datetime.datetime.fromtimestamp(t, datetime.UTC))) for t in seconds]


def _seqs(axes: Axes) -> None:
    """A relay-seq axis: whole seqs as they are (11 digits: few ticks, no offset to add up)."""
    axes.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    axes.ticklabel_format(axis="x", style="plain", useOffset=False)


def rows_per_day(facts: ReportFacts, path: str) -> None:
    """Rows per partition day (the day the writer received them), a line per table."""
    figure = _figure()
    tables = {name: fact for name, fact in facts.tables.items() if fact.rows_by_day}
    if not tables:
        _empty(figure, "no rows exported yet")
    else:
        axes = figure.subplots()
        xs: list[float] = []
        for name, fact in tables.items():
            points = dated(fact.rows_by_day)
            days = _days([day for day, _ in points])
            axes.plot(days, [rows for _, rows in points], marker="o", label=name)
            xs += days
        axes.set_ylabel("rows")
        axes.set_title("Rows per day, by table (partition_date)")
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        _dates(axes, xs)
    figure.savefig(path)


def coverage(facts: ReportFacts, path: str) -> None:
    """The coverage record over seqs, a lane per source: covered runs as bars, gaps in red."""
    figure = _figure()
    spans = coverage_spans(facts.coverage)
    if not spans:
        _empty(figure, "nothing collected yet")
    else:
        axes = figure.subplots()
        sources = sorted({source for source, *_ in spans})
        for lane, source in enumerate(sources):
            for kind, color in (("covered", "#2a7ab0"), ("gap", "#d62728")):
                bars = [(first, last - first + 1) for s, k, first, last in spans if s == source and k == kind]
                label = ("covered runs" if kind == "covered" else "gaps") if lane == 0 else None
                axes.broken_barh(bars, (lane - 0.4, 0.8), facecolors=color, label=label)
        axes.set_yticks(range(len(sources)), sources)
        _seqs(axes)
        axes.set_xlabel("relay seq")
        axes.set_title("Coverage: the seqs processed (blue) and those known lost (red)")
        axes.legend(fontsize=8)
    figure.savefig(path)


def population(facts: ReportFacts, path: str) -> None:
    """Each role's members over seqs, from the membership spells."""
    figure = _figure()
    steps = population_steps(facts.spells)
    if not steps:
        _empty(figure, "no membership recorded yet")
    else:
        axes = figure.subplots()
        # each line runs on to the last seq processed: a population that never changed is a line
        end = max(
            [last for *_, last in coverage_spans(facts.coverage)] + [q for p in steps.values() for q, _ in p]
        )
        for role, points in steps.items():
            line = [*points, (end, points[-1][1])] if points[-1][0] < end else points
            axes.step([q for q, _ in line], [n for _, n in line], where="post", label=f"{role} users")
        _seqs(axes)
        axes.set_ylim(0, max(n for points in steps.values() for _, n in points) * 1.1 + 1)
        axes.set_xlabel("relay seq")
        axes.set_ylabel("accounts")
        axes.set_title("Population over seqs (withdrawn accounts' spells are gone: counted below)")
        axes.legend(fontsize=8)
    figure.savefig(path)


def verification(facts: ReportFacts, path: str) -> None:
    """Per table, rows whose commit was verified, failed verification, or was not checked."""
    figure = _figure()
    if not facts.verification:
        _empty(figure, "no table has a verified column yet")
    else:
        axes = figure.subplots()
        names = sorted(facts.verification)
        left = [0] * len(names)
        for outcome, label, color in (
            ("true", "verified", "#2ca02c"),
            ("false", "not verified", "#d62728"),
            ("null", "not checked", "#aaaaaa"),
        ):
            counts = [facts.verification[name].get(outcome, 0) for name in names]
            axes.barh(names, counts, left=left, color=color, label=label)
            left = [a + b for a, b in zip(left, counts, strict=True)]
        axes.set_xlabel("rows")
        axes.set_title("Verification outcomes by table")
        axes.tick_params(axis="y", labelsize=7)
        axes.legend(fontsize=8)
    figure.savefig(path)


def backfills(facts: ReportFacts, path: str) -> None:
    """Backfills over time: how many DIDs stood done, failed or pending after each change."""
    figure = _figure()
    if not facts.backfills:
        _empty(figure, "no backfill recorded")
    else:
        axes = figure.subplots()
        xs = []
        for status, color in (("done", "#2ca02c"), ("failed", "#d62728"), ("pending", "#ff7f0e")):
            seconds = [t for t, s, _ in facts.backfills if s == status]
            if not seconds:
                continue
            # from none, a step up at each DID's change, held until now: a line even for one DID
            times = _times([seconds[0], *seconds, facts.generated])
            counts = [0, *range(1, len(seconds) + 1), len(seconds)]
            axes.step(
                times,
                counts,
                where="post",
                color=color,
                marker="o",
                markevery=range(1, len(times) - 1),
                label=status,
            )
            xs += times
        axes.set_ylim(bottom=0)
        axes.set_ylabel("DIDs")
        axes.set_title("Backfill progress (each DID at its latest status)")
        axes.legend(fontsize=8)
        _dates(axes, xs)
    figure.savefig(path)


PLOTS: dict[str, tuple[str, Callable[[ReportFacts, str], None]]] = {
    "rows_per_day.png": ("Rows per day, by table", rows_per_day),
    "coverage.png": ("Coverage timeline", coverage),
    "population.png": ("Population over time", population),
    "verification.png": ("Verification outcomes", verification),
    "backfills.png": ("Backfill progress", backfills),
}
"""File name -> (the figure's title, the function that draws it), in the page's order."""
