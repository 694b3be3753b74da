"""AT Protocol datetimes -> microseconds since the epoch, UTC: one parser for both phases.

The writer keeps a commit only if its time parses here, and the export converts the same
string with the same function, so a value the writer accepted can always become a row
(``timestamp[us, UTC]``). The syntax is the AT Protocol's (RFC 3339 as ISO 8601 allows it:
``YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)``, ASCII digits, no ``-00:00``), checked
against the interop fixtures; dates are proleptic Gregorian from year 0, without ``datetime``
(whose years start at 1).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

__all__ = ["MAX_SEQ", "is_seq", "micros", "utc_now"]

MAX_SEQ = 2**63 - 1  # a seq is an int64 column in every dataset

_SYNTAX = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_SECONDS: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> seconds since the epoch, for the fast path


def is_seq(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_SEQ


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


_YEAR_ZERO = _days_from_civil(0, 1, 1) * 86_400


def _seconds(fields: tuple[int, ...]) -> int | None:
    year, month, day, hour, minute, second = fields
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)):
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    return _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second


def micros(value: str) -> int | None:
    """Microseconds since the epoch of an AT Protocol datetime; None when it is not one.

    The relay's and the writer's times (``...:SSZ`` or ``...:SS.fffZ``) take a fast path: their
    seconds are computed once per distinct second and the fraction read as ASCII digits.
    """
    prefix, rest = value[:19], value[19:]
    seconds = _SECONDS.get(prefix)
    if seconds is not None:
        if rest == "Z":
            return seconds * 1_000_000
        fraction = rest[1:-1]
        if rest[:1] == "." and rest[-1:] == "Z" and fraction.isascii() and fraction.isdigit():
            return seconds * 1_000_000 + int(fraction[:6].ljust(6, "0"))
    return _parse(value)


def _parse(value: str) -> int | None:
    match = _SYNTAX.fullmatch(value)
    if match is None:
        return None
    fraction, zone = match.group(7), match.group(8)
    seconds = _seconds(tuple(map(int, match.groups()[:6])))
    if seconds is None:
        return None
    if zone == "Z":
        if len(_SECONDS) > 100_000:
            _SECONDS.clear()
        _SECONDS[value[:19]] = seconds
    else:
        if zone == "-00:00" or int(zone[1:3]) > 23 or int(zone[4:]) > 59:
            return None
        offset = int(zone[1:3]) * 3600 + int(zone[4:]) * 60
        seconds -= offset if zone[0] == "+" else -offset
        if seconds < _YEAR_ZERO:
            return None
    return seconds * 1_000_000 + (int(fraction[:6].ljust(6, "0")) if fraction else 0)


_second: list[object] = [None, ""]  # the last whole second formatted, and its text


def utc_now() -> str:
    """Now, UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; the seconds part is formatted once a second."""
    now = time.time_ns()
    seconds, fraction = divmod(now // 1000, 1_000_000)
    if _second[0] != seconds:
        _second[0] = seconds
        _second[1] = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{fraction:06d}Z"
