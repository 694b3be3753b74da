"""What a writer run reports: its frames, ops, files and rejections by kind, and its cursor."""

from __future__ import annotations

import msgspec

__all__ = ["WriteSummary"]


class WriteSummary(msgspec.Struct, kw_only=True):
    frames: dict[str, int]
    ops: dict[str, int]
    files: dict[str, int]
    rejections: dict[str, int]
    skipped_below_cursor: int
    cursor: int | None
    accounts: dict[str, int] = msgspec.field(default_factory=dict)  # status decisions, by kind
    verification: dict[str, int] = msgspec.field(default_factory=dict)  # with --verify: outcomes
