"""What the commands share: the cache, state and registry options, and logging to stderr as
text or JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncstream.handlers import Registry

__all__ = [
    "HANDLERS_ENV",
    "JsonFormatter",
    "add_handlers_option",
    "add_store_options",
    "did_argument",
    "load_registry",
    "setup_logging",
]

HANDLERS_ENV = "SYNCSTREAM_HANDLERS"


def add_store_options(parser: argparse.ArgumentParser, *, state_help: str) -> None:
    parser.add_argument(
        "--cache-dir", default="syncstream-cache", help="root of the cache tree (default: %(default)s)"
    )
    parser.add_argument(
        "--state", default="syncstream-state.sqlite", help=f"{state_help} (default: %(default)s)"
    )
    add_handlers_option(parser)
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines on stderr: text, or JSON lines with time, level, event and fields "
        "(default: %(default)s)",
    )


def add_handlers_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--handlers",
        metavar="MODULE:NAME",
        default=os.environ.get(HANDLERS_ENV) or None,
        help="the registry of handlers: NAME in MODULE, imported by name (so that a helper process "
        f"imports the same functions); default: ${HANDLERS_ENV}, else the built-in "
        "syncstream.handlers:HANDLERS",
    )


def load_registry(spec: str | None) -> Registry:
    """The registry ``MODULE:NAME`` names (the built-in one for None), checked; ``ConfigError``
    naming what is wrong with the spec, the module, the attribute or the registry."""
    from syncstream.errors import ConfigError  # noqa: PLC0415
    from syncstream.handlers import HANDLERS, HandlerConfig, check_registry  # noqa: PLC0415

    if spec is None:
        return HANDLERS
    module_name, colon, name = spec.partition(":")
    if not colon or not module_name or not name or ":" in name:
        raise ConfigError(f"--handlers {spec}: give MODULE:NAME, such as mypackage.registry:HANDLERS")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ConfigError(
            f"--handlers {spec}: cannot import {module_name} ({error}); put its directory on "
            "PYTHONPATH, or install it"
        ) from None
    except Exception as error:  # the user's module failed as it was imported
        raise ConfigError(
            f"--handlers {spec}: importing {module_name} failed: {type(error).__name__}: {error}"
        ) from None
    value: object = module
    for part in name.split("."):
        if not hasattr(value, part):
            raise ConfigError(f"--handlers {spec}: {module_name} has no attribute {name}")
        value = getattr(value, part)
    if not isinstance(value, Mapping) or not all(isinstance(c, HandlerConfig) for c in value.values()):
        raise ConfigError(
            f"--handlers {spec}: {name} is not a registry (a mapping of handler names to "
            f"HandlerConfig): it is a {type(value).__name__}"
        )
    try:
        check_registry(value)
    except ConfigError as error:
        raise ConfigError(f"--handlers {spec}: {error}") from None
    return value


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
