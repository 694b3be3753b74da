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
                sections.handlers,
            )
        )
    names = set(datasets_of(registry)) | set(status["datasets_written"])
    outputs = _outputs(options)
    tables, newest = _tables(outputs, names)
    return {
        "version": __version__,
        "state": os.path.abspath(options.state),
        **status,
        **sections.lag(newest, now),
        "outputs": outputs,
        "tables": tables,
    }


def _outputs(options: StatusOptions) -> list[str]:
    """The outputs whose tables are counted: --out (the store records no outputs of its own yet)."""
    if options.out is None:
        return []
    return [options.out if "://" in options.out else os.path.abspath(options.out)]


def _tables(outputs: list[str], names: set[str]) -> tuple[dict[str, Any] | None, float | None]:
    """Each table's rows, files, bytes and version (a name shared by outputs: summed), and the
    newest event's time among them."""
    if not outputs:
        return None, None
    from syncstream.lake.inventory import newest_event_time, table_facts  # noqa: PLC0415 (delta-rs)

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
