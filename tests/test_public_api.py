"""The package's public face."""

from __future__ import annotations

import syncstream


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted (constants first, as ruff sorts) and every name in it resolves."""
    assert syncstream.__all__ == sorted(syncstream.__all__, key=lambda n: (not n.isupper(), n))
    for name in syncstream.__all__:
        assert getattr(syncstream, name) is not None


def test_issue_names_are_importable() -> None:
    """The names other pipelines import are there."""
    from syncstream import (  # noqa: F401
        HANDLERS,
        BatchExportContext,
        CacheWriteContext,
        FollowStatus,
        HandlerConfig,
        HandlerKey,
        Operation,
        RecordType,
        setup_batch_export_system,
        setup_cache_write_system,
    )

    assert syncstream.__version__ == "0.1.0"


def test_public_names_come_from_their_modules() -> None:
    """Each public name is the object its module defines (resolved on first use)."""
    from syncstream import context, errors, handlers, records, types

    assert syncstream.HANDLERS is handlers.HANDLERS
    assert syncstream.setup_cache_write_system is context.setup_cache_write_system
    assert syncstream.ConfigError is errors.ConfigError
    assert syncstream.CachedRecord is records.CachedRecord
    assert syncstream.HandlerKey is types.HandlerKey
    assert set(syncstream.__all__) <= set(dir(syncstream))
