"""What the commands share: the cache and state options, and logging to stderr as text or JSON."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

__all__ = ["JsonFormatter", "add_store_options", "did_argument", "setup_logging"]


def add_store_options(parser: argparse.ArgumentParser, *, state_help: str) -> None:
    parser.add_argument(
        "--cache-dir", default="syncstream-cache", help="root of the cache tree (default: %(default)s)"
    )
    parser.add_argument(
        "--state", default="syncstream-state.sqlite", help=f"{state_help} (default: %(default)s)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines on stderr: text, or JSON lines with time, level, event and fields "
        "(default: %(default)s)",
    )


def did_argument(text: str) -> str:
    """An argparse ``type`` for a DID: a bad one is a usage error naming it."""
    from syncstream.syntax import is_did  # noqa: PLC0415

    if not is_did(text):
        raise argparse.ArgumentTypeError(f"not a valid DID: {text!r}")
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``event`` (a
    structured event's name, else the message), ``message``, and the event's fields (``seq``,
    counts, ``reason``) given as ``extra={"event": ..., "fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or message,
            "message": message,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(quiet: bool, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, handlers=[handler])
