"""Options written once: the defaults every command shares, the option groups they add to their
parsers, the argparse types for numbers and durations, and ``Options``, the frozen struct each
command's options are built into (by ``options_from``) and the library takes.

A struct checks itself at construction (``ConfigError``): the command line and the library share
one set of defaults and one set of rules. The argparse types say the same rules early, per option,
as a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import msgspec

from syncstream.errors import ConfigError

__all__ = [
    "CACHE_DIR",
    "FETCH_GRACE",
    "HANDLERS_ENV",
    "OUT",
    "PLC_URL",
    "STATE",
    "WRITER_TIMEOUT",
    "FetchOptions",
    "LogOptions",
    "Options",
    "StoreOptions",
    "add_did_option",
    "add_fetch_options",
    "add_handlers_option",
    "add_log_options",
    "add_out_option",
    "add_plc_option",
    "add_store_options",
    "add_users_options",
    "did_argument",
    "duration",
    "non_negative_float",
    "non_negative_int",
    "options_from",
    "parse_duration",
    "positive_float",
    "positive_int",
    "rate",
]

PLC_URL = "https://plc.directory"  # the public PLC directory: did:plc documents and their keys
FETCH_GRACE = 10.0  # seconds of a transfer before its rate is judged
CACHE_DIR = "syncstream-cache"
STATE = "syncstream-state.sqlite"
OUT = "syncstream-parquet"
HANDLERS_ENV = "SYNCSTREAM_HANDLERS"
WRITER_TIMEOUT = 60.0  # seconds a purge waits for a running writer to apply the new population


# numbers and durations -----------------------------------------------------------------------


def _number(kind: Callable[[str], float], what: str, good: Callable[[float], bool]) -> Callable[[str], Any]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if not good(value):
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}")
        return value

    return parse


positive_int: Callable[[str], int] = _number(int, "a positive integer", lambda v: v > 0)
positive_float: Callable[[str], float] = _number(float, "a positive number", lambda v: v > 0)
non_negative_int: Callable[[str], int] = _number(int, "a non-negative integer", lambda v: v >= 0)
non_negative_float: Callable[[str], float] = _number(float, "a non-negative number", lambda v: v >= 0)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``1d`` -> seconds; ``ValueError`` otherwise."""
    found = _DURATION.fullmatch(text.strip())
    if found is None or float(found.group(1)) <= 0:
        raise ValueError(f"expected a positive duration such as 90s, 15m, 1h or 1d, got {text!r}")
    return float(found.group(1)) * _UNIT[found.group(2)]


def duration(text: str) -> float:
    """An argparse ``type``: a duration (``parse_duration``) in seconds."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def rate(text: str) -> tuple[int, float]:
    """An argparse ``type``: ``CALLS/SECONDS``, both positive."""
    calls, _, seconds = text.partition("/")
    try:
        parsed = int(calls), float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not CALLS/SECONDS: {text!r}") from None
    if parsed[0] < 1 or parsed[1] <= 0:
        raise argparse.ArgumentTypeError(f"not CALLS/SECONDS with both positive: {text!r}")
    return parsed


def did_argument(text: str) -> str:
    """An argparse ``type`` for a DID: a bad one is a usage error naming it."""
    from syncstream.registry.syntax import is_did  # noqa: PLC0415

    if not is_did(text):
        raise argparse.ArgumentTypeError(f"not a valid DID: {text!r}")
    return text


# the structs ---------------------------------------------------------------------------------


class Options(msgspec.Struct, frozen=True, kw_only=True):
    """A command's options with their defaults, checked at construction: the fields named in
    ``POSITIVE`` must be above 0 (or None, when optional), those in ``NON_NEGATIVE`` not below;
    ``check`` adds a command's own rules. A struct field holds an option group of its own."""

    POSITIVE: ClassVar[tuple[str, ...]] = ()
    NON_NEGATIVE: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self.POSITIVE:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{_option(name)} must be positive, not {value!r}")
        for name in self.NON_NEGATIVE:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{_option(name)} must not be negative, not {value!r}")
        self.check()

    def check(self) -> None:
        """A command's rules across options; ``ConfigError`` naming what is wrong."""


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


_O = TypeVar("_O", bound=Options)


def options_from(cls: type[_O], parser: argparse.ArgumentParser, args: argparse.Namespace) -> _O:
    """The ``cls`` options ``parser`` parsed into ``args`` (each field by its name, a struct
    field from the same namespace); one that breaks a rule is a usage error (exit 2)."""
    try:
        return _from_namespace(cls, args)
    except ConfigError as error:
        parser.error(str(error))


def _from_namespace(cls: type[_O], args: argparse.Namespace) -> _O:
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        if isinstance(field.type, type) and issubclass(field.type, Options):
            values[field.name] = _from_namespace(field.type, args)
        else:
            value = getattr(args, field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value  # frozen: all of it
    return cls(**values)


class LogOptions(Options, frozen=True, kw_only=True):
    """``-q`` and ``--log-format``, the same on every command."""

    quiet: bool = False
    log_format: str = "text"  # or "json"

    def check(self) -> None:
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"--log-format must be text or json, not {self.log_format!r}")


class StoreOptions(LogOptions, frozen=True, kw_only=True):
    """The cache, the state store and the registry, and logging: what every phase command reads."""

    cache_dir: str = CACHE_DIR
    state: str = STATE
    handlers: str | None = None  # MODULE:NAME of a registry; None: the built-in (the command
    # line's default is $SYNCSTREAM_HANDLERS)


class FetchOptions(Options, frozen=True, kw_only=True):
    """How a backfill fetches repositories (the backfill command's, and the writer's with
    ``--backfill``): the bounds of one fetch, politeness towards each PDS host, the endpoints a
    DID document may name, where repositories are spooled."""

    POSITIVE = ("fetch_timeout", "fetch_deadline", "pds_concurrency")
    NON_NEGATIVE = ("fetch_min_rate",)

    fetch_timeout: float = 30.0  # connecting, and silence between two chunks
    fetch_deadline: float = 300.0  # seconds for a whole getRepo, waits for the host included
    fetch_min_rate: float = 16_384.0  # bytes/s, the transfer's mean, checked after a grace
    pds_concurrency: int = 4  # getRepo calls at once to one host
    pds_rate: tuple[int, float] = (3000, 300.0)  # getRepo calls per period (seconds) to one host
    pds_endpoints: str = "auto"  # "public", "any", or "auto": public unless the PLC is on loopback
    scratch_dir: str | None = None  # None: the system's temporary directory

    def check(self) -> None:
        if self.pds_endpoints not in ("auto", "public", "any"):
            raise ConfigError(f"--pds-endpoints must be auto, public or any, not {self.pds_endpoints!r}")
        if self.pds_rate[0] < 1 or self.pds_rate[1] <= 0:
            raise ConfigError(f"--pds-rate must be CALLS/SECONDS with both positive, not {self.pds_rate}")


# the option groups ---------------------------------------------------------------------------


def add_store_options(parser: argparse.ArgumentParser, *, state_help: str) -> None:
    """``--cache-dir``, ``--state``, ``--handlers``, ``-q`` and ``--log-format``."""
    parser.add_argument(
        "--cache-dir", default=CACHE_DIR, help="root of the cache tree (default: %(default)s)"
    )
    parser.add_argument("--state", default=STATE, help=f"{state_help} (default: %(default)s)")
    add_handlers_option(parser)
    add_log_options(parser)


def add_log_options(parser: argparse.ArgumentParser) -> None:
    """``-q``, ``--log-format`` and ``--config``, the same on every command."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML file whose table for this command ([write], [export], ...) gives options by "
        "their names (cache_dir = ..., state = ...); a flag on the command line wins",
    )
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
        "syncstream.registry.builtin:HANDLERS",
    )


def add_users_options(parser: argparse.ArgumentParser, *, default: str) -> None:
    """``--study-users`` and ``--in-network-users``; ``default`` says what is read without them."""
    parser.add_argument(
        "--study-users",
        metavar="FILE",
        help="file of study-user DIDs, one per line, '#' comments; replaces the stored set "
        f"(default: {default})",
    )
    parser.add_argument(
        "--in-network-users",
        metavar="FILE",
        help="file of in-network DIDs (the accounts study users follow), same format; replaces "
        f"the stored set (default: {default})",
    )


def add_out_option(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--out``: the export's output, a directory or a ``pyarrow.fs`` URI."""
    parser.add_argument(
        "--out", default=OUT, help=f"{what}: a directory or a pyarrow.fs URI such as "
        "s3://bucket/prefix (default: %(default)s)",
    )  # fmt: skip


def add_did_option(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--did``, repeatable, each a valid DID."""
    parser.add_argument("--did", action="append", default=[], type=did_argument, help=f"{what} (repeatable)")


def add_plc_option(parser: argparse.ArgumentParser, *, what: str) -> None:
    parser.add_argument("--plc-url", default=PLC_URL, help=f"{what} (default: %(default)s)")


def add_fetch_options(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The ``FetchOptions``; ``prefix``: "backfill-" for the writer, whose other options are the
    stream's."""
    defaults = FetchOptions()
    parser.add_argument(
        f"--{prefix}timeout", dest="fetch_timeout", type=positive_float, default=defaults.fetch_timeout,
        metavar="SECONDS",
        help="connecting, and silence within a transfer, before a fetch is cut (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        f"--{prefix}deadline", dest="fetch_deadline", type=positive_float, default=defaults.fetch_deadline,
        metavar="SECONDS", help="a whole getRepo, waits for the host included (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        f"--{prefix}min-rate", dest="fetch_min_rate", type=non_negative_float,
        default=defaults.fetch_min_rate, metavar="BYTES",
        help=f"bytes/s a transfer must average after its first {FETCH_GRACE:g}s, or it is cut "
        "(a PDS that trickles) (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--pds-concurrency", type=positive_int, default=defaults.pds_concurrency, metavar="N",
        help="getRepo calls at once to one PDS host (default: %(default)s)",
    )  # fmt: skip
    calls, period = defaults.pds_rate
    parser.add_argument(
        "--pds-rate", type=rate, default=defaults.pds_rate, metavar="CALLS/SECONDS",
        help="getRepo calls per period to one PDS host, a token bucket; 429 answers and "
        f"RateLimit-* headers pause the host besides (default: {calls}/{period:g})",
    )  # fmt: skip
    parser.add_argument(
        "--pds-endpoints", choices=("auto", "public", "any"), default=defaults.pds_endpoints,
        help="PDS endpoints a DID document may name: public (https on a public host, port 443), "
        "any, or auto: public, unless --plc-url is on loopback (a rehearsal) (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        f"--{prefix}scratch-dir" if prefix else "--scratch-dir", dest="scratch_dir", metavar="DIR",
        help="where repositories are streamed to disk and indexed while they are walked "
        "(default: the system's temporary directory)",
    )  # fmt: skip
