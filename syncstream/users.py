"""User files: the study's and the in-network users' DIDs, one per line."""

from __future__ import annotations

from pathlib import Path

from returns.result import Failure, Result, Success

from syncstream.registry.syntax import is_did

__all__ = ["read_user_file", "read_user_lines"]


def read_user_file(path: str | Path) -> Result[list[str], str]:
    """DIDs from a file, one per line; ``#`` starts a comment; blank lines are skipped."""
    return read_user_lines(path).map(lambda lines: [did for _, did in lines])


def read_user_lines(path: str | Path) -> Result[list[tuple[int, str]], str]:
    """(line number, DID) of a user file (see ``read_user_file``)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors save
    except (OSError, UnicodeDecodeError) as error:
        return Failure(f"cannot read user file {path}: {error}")
    dids: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.split("#", 1)[0].strip()
        if not value:
            continue
        if not is_did(value):
            return Failure(f"{path}:{number}: not a valid DID: {value!r}")
        dids.append((number, value))
    return Success(dids)
