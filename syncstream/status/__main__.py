"""``syncstream status``: the store and its tables at a glance."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

from syncstream.cli import fail, load_registry, run, setup_logging
from syncstream.errors import SyncstreamError
from syncstream.status import sections
from syncstream.status.options import StatusOptions, parse

__all__ = ["gather", "main"]


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


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    setup_logging(options.quiet, options.log_format)
    try:
        status = gather(options, time.time())
    except SyncstreamError as error:
        fail(str(error), event="status_refused")
        return 2
    if options.json:
        print(json.dumps(status, sort_keys=True))
    else:
        from syncstream.status.text import render  # noqa: PLC0415

        print(render(status))
    return 0


if __name__ == "__main__":
    run(main)
