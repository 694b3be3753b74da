"""The status as text that fits a terminal: one line per section, a table's line per table."""

from __future__ import annotations

import textwrap
from typing import Any

from syncstream.cli import human_seconds

__all__ = ["render"]

_WIDTH = 80
_LABEL = 14


def _line(label: str, text: str) -> str:
    return textwrap.fill(text, _WIDTH, initial_indent=f"{label:<{_LABEL}}", subsequent_indent=" " * _LABEL)


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _gaps(coverage: dict[str, Any]) -> str:
    largest = coverage["largest_gap"]
    if largest is None:
        return "no gaps"
    return (
        f"{coverage['gaps']} gaps, the largest {largest['source']} {largest['first_seq']}-"
        f"{largest['last_seq']} ({largest['seqs']:,} seqs, {largest['from_time']} to {largest['to_time']})"
    )


def _catalog(catalog: dict[str, Any]) -> list[str]:
    """A line each for the snapshots, record files and scratch directories the store made."""
    lines = []
    for key, label, what in (
        ("snapshots", "snapshots", "snapshots"),
        ("records", "record files", "--record files"),
        ("scratch", "scratch", "backfill scratch directories left"),
    ):
        entry = catalog[key]
        where = f": {', '.join(entry['locations'])}" if entry["locations"] else ""
        lines.append(_line(label, f"{entry['count']} {what}{where}"))
    return lines


def render(status: dict[str, Any]) -> str:
    """The status object (``gather``'s) as lines."""
    cursors = status["cursor"]
    lag = status["lag_seconds"]
    purged = ", ".join(f"{n} {reason}" for reason, n in status["purged"].items()) or "none"
    backfills = status["backfills"]
    export = status["last_export"]
    coverage = status["coverage"]
    lines = [
        f"syncstream {status['version']}",
        _line("state", status["state"]),
        _line("cursor", ", ".join(f"{src} {seq}" for src, seq in cursors.items()) or "none (never written)"),
        _line(
            "lag",
            "unknown (no frame processed, and no table to read)"
            if lag is None
            else f"{human_seconds(lag)} behind the relay's time of the newest "
            + ("row exported" if status["lag_from"] == "tables" else "frame processed"),
        ),
        _line(
            "population",
            f"{status['study_users']} study users, {status['in_network_users']} in-network users "
            f"({status['in_network_users_tracked']} with the follows tracked), "
            f"{status['withdrawn']} withdrawn; purged: {purged}",
        ),
        _line(
            "purges",
            f"{status['pending_purges']} pending (next export), {status['unfinished_purges']} "
            f"unfinished, {status['purges']} recorded",
        ),
        _line("backfills", ", ".join(f"{n} {s}" for s, n in backfills.items())),
        _line("verified", f"{status['verified_accounts']} accounts with a verified chain of commits"),
        _line("last export", "never" if export is None else f"{export['time']}, run {export['run']}"),
        _line(
            "coverage",
            f"{coverage['runs']} runs, {_gaps(coverage)}; through "
            + (", ".join(f"{src} {seq}" for src, seq in coverage["through"].items()) or "nothing yet"),
        ),
        *_catalog(status["catalog"]),
        _line("handlers", ", ".join(status["handlers"]) or "none yet"),
    ]
    tables = status["tables"]
    if tables is None:
        lines.append(_line("tables", "give --out to count each table's rows and files"))
        return "\n".join(lines)
    lines.append(_line("tables", f"{len(tables)}, under {', '.join(status['outputs'])}"))
    width = max((len(name) for name in tables), default=0)
    for name, table in tables.items():
        size = _size(table["bytes"])  # 78 columns with the longest built-in name; versions: --json
        lines.append(f"  {name:<{width}} {table['rows']:>10,} rows {table['files']:>5,} files {size:>9}")
    return "\n".join(lines)
