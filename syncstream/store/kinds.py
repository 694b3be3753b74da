"""The words the state store keeps in its columns, as enums: each is stored as its value, the
same string earlier layouts stored, so a store written before them opens unchanged."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "BackfillStatus",
    "Change",
    "CoverageKind",
    "CoverageReason",
    "KeyKind",
    "PurgeReason",
    "UserKind",
    "WriterKind",
]


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


class CoverageKind(StrEnum):
    """A coverage row's kind (``coverage.kind``): seqs the writer processed, or seqs it knows
    it lost."""

    COVERED = "covered"
    GAP = "gap"


class CoverageReason(StrEnum):
    """Why a coverage row begins where it does (``coverage.reason``): for a covered run, how
    the writer took the stream up; for a gap, how the seqs in it were lost."""

    FIRST_START = "first start"  # no stored cursor: the study's first seq on this source
    RESUMED = "resumed"  # from the stored cursor: the relay's backlog covered the downtime
    CURSOR_OPTION = "cursor option"  # --cursor N: a start chosen by hand
    LIVE_START = "live start"  # --live: the relay's present, whatever lay before it
    AFTER_GAP = "after gap"  # the run after an outdated cursor's gap
    OUTDATED_CURSOR = "outdated cursor"  # the relay no longer held what followed the cursor
    REPLAY_START = "replay start"  # a replay whose first frame lies past the stored cursor


class Change(StrEnum):
    """How an account came into the population or went out of it (``membership.how`` and
    ``membership.left_how``)."""

    USERS_FILE = "users file"  # the user file a writer started with
    SIGHUP = "sighup"  # the user files reloaded on SIGHUP
    TRACK_FOLLOWS = "track_follows"  # a study user's follow, or its delete (--track-follows)
    REENROL = "reenrol"  # a purged account enrolled again (--reenrol)
    PURGE = "purge"  # withdrawn or deleted (syncstream purge, or an export's account purge)
    SOURCE = "source"  # the writer moved to another relay, whose seqs are its own
