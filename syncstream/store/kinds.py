"""The words the state store keeps in its columns, as enums: each is stored as its value, the
same string earlier layouts stored, so a store written before them opens unchanged."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BackfillStatus", "KeyKind", "PurgeReason", "UserKind", "WriterKind"]


class UserKind(StrEnum):
    """Which user file a DID came from (``users.kind``)."""

    STUDY = "study"
    IN_NETWORK = "in_network"


class BackfillStatus(StrEnum):
    """Where a DID's repository backfill stands (``backfills.status``)."""

    DONE = "done"
    FAILED = "failed"  # retried by the next backfill, after its backoff
    PENDING = "pending"  # a #sync: the repository must be fetched again


class PurgeReason(StrEnum):
    """Why accounts were purged (``purges.reason``, ``purged_dids.reason``,
    ``pending_purges.reason``): a withdrawal, or an account status the writer purges for
    (``--purge-account-statuses``, any of the Account spec's)."""

    WITHDRAWAL = "withdrawal"
    TAKENDOWN_ACCOUNT = "takendown account"
    SUSPENDED_ACCOUNT = "suspended account"
    DELETED_ACCOUNT = "deleted account"
    DEACTIVATED_ACCOUNT = "deactivated account"
    DESYNCHRONIZED_ACCOUNT = "desynchronized account"
    THROTTLED_ACCOUNT = "throttled account"

    @classmethod
    def for_account(cls, status: str) -> PurgeReason:
        """The reason of a purge an ``#account`` event of ``status`` decided."""
        return cls(f"{status} account")


class KeyKind(StrEnum):
    """An exported key's kind (``exported_keys.operation``): a create and an update of one cid
    are one version of the record, so one row."""

    VERSION = "version"
    DELETE = "delete"


class WriterKind(StrEnum):
    """What wrote (``written_by.kind``): a handler to the cache, or the export to a dataset."""

    HANDLER = "handler"
    DATASET = "dataset"
