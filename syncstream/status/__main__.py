"""``syncstream status``: the store and its tables at a glance."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from syncstream.cli import fail, run, setup_logging
from syncstream.errors import SyncstreamError
from syncstream.status.gather import gather
from syncstream.status.options import parse

__all__ = ["main"]


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
