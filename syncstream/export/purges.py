"""The purges an export runs first: an interrupted one finished, and the accounts the writer
saw deleted or taken down."""

from __future__ import annotations

from syncstream.errors import PurgeError
from syncstream.export.context import BatchExportContext
from syncstream.purge.protocol import PurgeSummary, purge_accounts
from syncstream.store import PurgeReason

__all__ = ["purge_first"]


def purge_first(
    context: BatchExportContext, *, purge_deleted: bool, writer_timeout: float
) -> list[PurgeSummary]:
    """Finish an interrupted purge; purge the accounts seen deleted. A purge that cannot finish
    now (a writer that does not answer) raises ``PurgeError``: nothing is exported until it has,
    since the cache may hold rows of its accounts (the next export tries again)."""
    state = context.state
    pending = state.purges.pending() if purge_deleted else {}
    if not pending and not state.purges.records(unfinished=True):
        return []
    from syncstream.lake.storage import ParquetStorage, storage_for  # noqa: PLC0415 (pyarrow: to purge only)

    output = context.output
    storage = storage_for(output, context.storage_options) if isinstance(output, str) else output
    by_reason: dict[PurgeReason, list[str]] = {}
    for did, (_, reason) in sorted(pending.items()):
        by_reason.setdefault(reason, []).append(did)
    target = storage if isinstance(storage, ParquetStorage) else None
    out = output if isinstance(output, str) else None
    try:
        done = purge_accounts(
            context.cache_root,
            state,
            target,
            context.handlers,
            locked=True,
            writer_timeout=writer_timeout,
            out=out,
        )
        for reason, dids in sorted(by_reason.items()):
            done += purge_accounts(
                context.cache_root,
                state,
                target,
                context.handlers,
                dids,
                reason=reason,
                locked=True,
                writer_timeout=writer_timeout,
                out=out,
            )
        return done
    except PurgeError as error:
        raise PurgeError(f"{error}; nothing was exported, so that no row of its accounts is") from None
