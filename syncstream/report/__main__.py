"""``syncstream report``: DIR/index.html and its plots, from the store and its tables."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

from syncstream.cli import fail, run, setup_logging
from syncstream.errors import SyncstreamError
from syncstream.report.options import parse

__all__ = ["main"]

log = logging.getLogger("syncstream.report")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    setup_logging(args.quiet, args.log_format)
    try:
        from syncstream.report.plots import PLOTS  # noqa: PLC0415 (matplotlib: only here)
    except ModuleNotFoundError as error:
        fail(f"the report needs {error.name}: pip install 'syncstream[report]'", event="report_refused")
        return 2
    from syncstream.report.facts import gather  # noqa: PLC0415
    from syncstream.report.page import render  # noqa: PLC0415

    try:
        facts = gather(args.state, args.out, args.handlers, time.time())
    except SyncstreamError as error:
        fail(str(error), event="report_refused")
        return 2
    try:
        os.makedirs(args.to, exist_ok=True)
        for name, (_, draw) in PLOTS.items():
            draw(facts, os.path.join(args.to, name))
        page = os.path.join(args.to, "index.html")
        with open(f"{page}.tmp", "w", encoding="utf-8") as handle:
            handle.write(render(facts))
        os.replace(f"{page}.tmp", page)  # a reader sees the old page or the new one
    except Exception as error:
        log.debug("report failed", exc_info=True)
        fail(f"report failed: {error}", event="report_failed")
        return 1
    total = sum(fact.rows for fact in facts.tables.values())
    print(f"report of {len(facts.tables)} tables ({total:,} rows): {os.path.abspath(page)}")
    return 0


if __name__ == "__main__":
    run(main)
