"""The status object: every section of the store's, each table's rows and files under the
outputs, and the lag behind the relay's time; ``syncstream status`` prints it, the report
shows it."""

from __future__ import annotations

import os
from typing import Any

from syncstream.cli import load_registry
from syncstream.status import sections
from syncstream.status.options import StatusOptions

__all__ = ["gather"]


def gather(options: StatusOptions, now: float) -> dict[str, Any]:
    """The status object: every section's names and values. ``ConfigError`` for a state that
    is missing or not a store (nothing is created) or a bad registry."""
    from syncstream import __version__  # noqa: PLC0415
    from syncstream.registry.handlers import datasets_of  # noqa: PLC0415
    from syncstream.store import StateStore  # noqa: PLC0415

    registry = load_registry(options.handlers)
    with StateStore(options.state, create=False) as state:
        status = sections.merged(
            section(state)
            for section in (
                sections.cursor,
                sections.population,
                sections.purges,
                sections.backfills,
                sections.verification,
                sections.last_export,
                sections.coverage,
                sections.catalog,
                sections.handlers,
            )
        )
        recorded = [o.location for o in state.catalog.outputs() if o.format == "delta"]
    names = set(datasets_of(registry)) | set(status["datasets_written"])
    outputs = _outputs(options, recorded)
    tables, newest = _tables(outputs, names)
    lag_from = "tables"
    if options.out is None:  # the lag behind what the writer processed, not what was exported
        newest, lag_from = sections.last_covered(status["coverage"]), "coverage"
    return {
        "version": __version__,
        "state": os.path.abspath(options.state),
        **status,
        **sections.lag(newest, now),
        "lag_from": lag_from,
        "outputs": outputs,
        "tables": tables,
    }


def _outputs(options: StatusOptions, recorded: list[str]) -> list[str]:
    """The outputs whose tables are counted: --out, or else the Delta outputs the catalog
    records (an output recorded but gone since, or not yet written, has no tables to count)."""
    if options.out is None:
        return recorded
    return [options.out if "://" in options.out else os.path.abspath(options.out)]


def _tables(outputs: list[str], names: set[str]) -> tuple[dict[str, Any] | None, float | None]:
    """Each table's rows, files, bytes and version (a name shared by outputs: summed), and the
    newest event's time among them."""
    if not outputs:
        return None, None
    from syncstream.lake.inventory import newest_event_time, table_facts  # noqa: PLC0415 (delta-rs)
    from syncstream.lake.study_record import RECORD_TABLES  # noqa: PLC0415

    names = names | set(RECORD_TABLES)  # the study's record: written beside the datasets
    tables: dict[str, Any] = {}
    newest: float | None = None
    for out in outputs:
        facts = table_facts(out, names)
        for name, fact in facts.items():
            entry = tables.setdefault(name, {"rows": 0, "files": 0, "bytes": 0, "version": fact.version})
            entry["rows"] += fact.rows
            entry["files"] += fact.files
            entry["bytes"] += fact.bytes
        when = newest_event_time(out, facts.values())
        if when is not None and (newest is None or when > newest):
            newest = when
    return dict(sorted(tables.items())), newest
