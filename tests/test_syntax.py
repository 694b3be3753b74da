"""Syntax checks against every line of the official interop fixtures."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from syncstream.registry import syntax
from tests.helpers import syntax_lines

CHECKS: dict[str, Callable[[str], bool]] = {
    "did": syntax.is_did,
    "handle": syntax.is_handle,
    "nsid": syntax.is_nsid,
    "recordkey": syntax.is_record_key,
    "tid": syntax.is_tid,
    "aturi": lambda value: syntax.parse_at_uri(value) is not None,
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_every_valid_fixture_is_accepted(name: str) -> None:
    """Each line of {name}_syntax_valid.txt passes the check."""
    values = syntax_lines(name, "valid")
    assert values
    assert [v for v in values if not CHECKS[name](v)] == []


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_every_invalid_fixture_is_rejected(name: str) -> None:
    """Each line of {name}_syntax_invalid.txt fails the check, whitespace cases included."""
    values = syntax_lines(name, "invalid")
    assert values
    assert [v for v in values if CHECKS[name](v)] == []


def test_fixture_reader_keeps_the_extra_rkey_and_whitespace() -> None:
    """'#extra' is a value, not a comment, and leading/trailing spaces survive."""
    assert "#extra" in syntax_lines("recordkey", "invalid")
    assert " at://did:plc:asdf123" in syntax_lines("aturi", "invalid")
    assert "at://did:plc:asdf123 " in syntax_lines("aturi", "invalid")


@pytest.mark.parametrize("value", [".", "..", "a/b", "", "x" * 513])
def test_record_keys_that_would_traverse_are_invalid(value: str) -> None:
    """Dots, slashes, empty and overlong keys can never become a path component."""
    assert not syntax.is_record_key(value)
