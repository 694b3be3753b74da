"""The base of syncstream's configs (handlers, datasets): immutable, keyword-only, strict."""

from __future__ import annotations

import msgspec

__all__ = ["Config"]


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of syncstream's configs: immutable, keyword-only, strict."""
