"""What the commands share: the registry a ``--handlers`` names, logging to stderr as text or
JSON, the one ``error:`` line, and an output that may be closed early (``| head``); their options
are in ``syncstream.options``."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from syncstream.registry.handlers import Registry

__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "environment_problem",
    "escape",
    "fail",
    "human_seconds",
    "load_registry",
    "run",
    "setup_logging",
]


def load_registry(spec: str | None) -> Registry:
    """The registry ``MODULE:NAME`` names (the built-in one for None), checked; ``ConfigError``
    naming what is wrong with the spec, the module, the attribute or the registry."""
    from syncstream.errors import ConfigError  # noqa: PLC0415
    from syncstream.registry.builtin import HANDLERS  # noqa: PLC0415
    from syncstream.registry.handlers import HandlerConfig, check_registry  # noqa: PLC0415

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


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(found: re.Match[str]) -> str:
    char = found[0]
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``): a value from
    the network (an rkey, a rev, a handle) can neither forge a log line nor drive a terminal."""
    return _CONTROL.sub(_escaped, text)


_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\d+|\*)?(?:\.\d+)?[a-zA-Z%]")


def _event_of(template: str) -> str:
    """A stable event name from a log call's format string (its words, not its values)."""
    words = re.findall(r"[a-z]+", _PLACEHOLDER.sub(" ", template).lower())
    return "_".join(words[:6]) or "message"


class TextFormatter(logging.Formatter):
    """``time level logger: message``, the message escaped (see ``escape``)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``event`` (a
    stable name: the structured event's, given as ``extra={"event": ..., "fields": {...}}``, else
    one made of the format string's words), ``message``, and the event's fields (``seq``, counts,
    ``reason``); a plain log call's values are ``args``."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or _event_of(str(record.msg)),
            "message": message,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        elif isinstance(record.args, tuple) and record.args:
            entry["args"] = list(record.args)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_format = ["text"]  # the commands' log format, for their ``error:`` line


def setup_logging(quiet: bool, log_format: str = "text") -> None:
    _format[0] = log_format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, handlers=[handler])
    # The SDK's HTTP client says every request at INFO: a backfill would log one line per PDS call.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str, *, event: str = "error", **fields: Any) -> None:
    """A command's ``error: ...`` line on stderr; with ``--log-format json``, a JSON object like
    every other line (``event`` names what failed)."""
    if _format[0] == "json":
        record = logging.LogRecord("syncstream", logging.ERROR, __file__, 0, message, None, None)
        record.event, record.fields = event, fields
        print(JsonFormatter().format(record), file=sys.stderr)
    else:
        print(f"error: {escape(message)}", file=sys.stderr)


def environment_problem() -> str | None:
    """What is wrong with the environment the command was given (a malformed
    ``SYNCSTREAM_FAILPOINTS``), or None."""
    from syncstream.failpoints import PROBLEM  # noqa: PLC0415

    return PROBLEM


def human_seconds(seconds: float) -> str:
    """``12.5s``, ``4m 10s``, ``5h 3m``, ``3d 14h``: a lag an operator reads at a glance."""
    if seconds < 0:
        return f"-{human_seconds(-seconds)}"  # a clock ahead of ours
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, mins = divmod(minutes, 60)
    days, hrs = divmod(hours, 24)
    if days:
        return f"{days}d {hrs}h"
    return f"{hours}h {mins}m" if hours else f"{minutes}m {secs}s"


class _Stdout:
    """stdout that goes quiet when its reader has gone (``| head``): the command finishes its
    work and exits with its own status, instead of a BrokenPipeError traceback."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            written: int = self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)
        return written

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def _gone(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def run(main: Callable[[], int]) -> NoReturn:
    """A command's entry point: ``raise SystemExit(main())``, with an stdout that may close early;
    the stop signals its ``main`` catches stay caught until it returns, then ignored (its work
    is done: a stop during the summary or the interpreter's teardown must not kill it)."""
    from syncstream.signals import ignore_stops, keep_until_exit  # noqa: PLC0415

    keep_until_exit()
    sys.stdout = _Stdout(sys.stdout)
    status = main()
    ignore_stops()
    sys.stdout.flush()
    if "pyarrow" in sys.modules or "deltalake" in sys.modules:
        # The command's work is done and said: leave without the interpreter's teardown, where
        # a pyarrow or delta-rs thread that outlives it can abort the process (exit 134, a
        # done status lost; delta-rs #2184, arrow #34314), however carefully tables are read.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(status)
    raise SystemExit(status)
