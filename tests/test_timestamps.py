"""One datetime parser for both phases: the AT Protocol's syntax, to microseconds, UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncstream.timestamps import MAX_SEQ, is_seq, micros
from tests.helpers import SYNTAX, syntax_lines


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    st.integers(min_value=0, max_value=12),
)
def test_micros_reads_rfc3339_utc_like_datetime(moment: datetime, digits: int) -> None:
    """``...:SS[.f{0..12}]Z`` gives the same microseconds as datetime, the fraction truncated."""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S").rjust(19, "0")
    fraction = f"{moment.microsecond:06d}{moment.microsecond % 1000:03d}000"[:digits]
    value = f"{text}.{fraction}Z" if digits else f"{text}Z"
    expected = moment.replace(tzinfo=UTC, microsecond=int(fraction[:6].ljust(6, "0")) if digits else 0)
    assert micros(value) == (expected - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert micros(value) == micros(value)  # the second call takes the cached seconds


@pytest.mark.parametrize("value", syntax_lines("datetime", "valid"))
def test_every_valid_interop_datetime_parses(value: str) -> None:
    """Each datetime the interop fixtures call valid has a time (year 0 included)."""
    assert micros(value) is not None


@pytest.mark.parametrize(
    "value",
    syntax_lines("datetime", "invalid")
    + [
        line
        for line in (SYNTAX / "datetime_parse_invalid.txt").read_text(encoding="utf-8").split("\n")
        if line and not line.startswith("#")
    ],
)
def test_every_invalid_interop_datetime_is_none(value: str) -> None:
    """Each datetime the interop fixtures call invalid, in syntax or in meaning, is None."""
    assert micros(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-07-04T16:38:07.517+02:00", "2026-07-04T14:38:07.517+00:00"),  # an offset
        ("2026-07-04T14:38:07.517-01:30", "2026-07-04T16:08:07.517+00:00"),
        ("2026-11-28T12:00:07.²Z", None),  # a digit, but not an ASCII one
        ("2026-11-28T12:00:07.5Z", "2026-11-28T12:00:07.500+00:00"),
        ("2026-07-04T14:38:07.517", None),  # no zone
        ("2026-07-04 14:38:07Z", None),
        ("2026-02-30T00:00:00Z", None),  # no such day
        ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00+00:00"),
        ("yesterday", None),
        ("", None),
    ],
)
def test_micros_of_other_forms(value: str, expected: str | None) -> None:
    """Offsets are applied; what is not an AT Protocol datetime is None, never an exception."""
    found = micros(value)
    if expected is None:
        assert found is None
        assert micros(value) is None  # twice: nothing half-cached
    else:
        assert found == (datetime.fromisoformat(expected) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
            microseconds=1
        )


def test_a_seq_is_an_int64() -> None:
    """Sequence numbers that fit the int64 column are seqs; others, and bools, are not."""
    assert [is_seq(v) for v in (0, 2**35, MAX_SEQ, MAX_SEQ + 1, -1, True, "1")] == [
        True, True, True, False, False, False, False,
    ]  # fmt: skip
