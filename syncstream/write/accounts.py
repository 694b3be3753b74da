"""What a population account's ``#account`` event means for its data: a purge at the next
export, the cancelling of one, or nothing."""

from __future__ import annotations

import logging

from syncstream.firehose.decode import AccountEvent
from syncstream.store import PurgeReason

__all__ = ["PURGE_ACCOUNT_STATUSES", "AccountStatuses"]

log = logging.getLogger("syncstream.write")

# An account with one of these statuses is purged at the next export unless it is reactivated
# first (the Account spec: ``deleted`` is for good, ``takendown`` by the service; a
# ``deactivated`` account, or one moving between PDSes, comes back with its data).
PURGE_ACCOUNT_STATUSES = frozenset({"deleted", "takendown"})


class AccountStatuses:
    """Each ``#account`` event's decision, counted by kind, and the batch's purges to record."""

    def __init__(self, purge_statuses: frozenset[str] = PURGE_ACCOUNT_STATUSES) -> None:
        self.purge_statuses = purge_statuses
        self.counts: dict[str, int] = {}  # decisions, by kind
        # accounts whose status asks for a purge at the next export (DID -> (seq, reason)), or
        # whose reactivation cancels one (reason None); the last event of a batch decides
        self.purges: dict[str, tuple[int, PurgeReason | None]] = {}

    def decide(self, event: AccountEvent, seq: int) -> None:
        """A status that purges marks the account for the next export's purge; a reactivation
        cancels that purge if it has not run yet; any other status keeps it. Each decision is
        logged and counted."""
        if event.active:
            decision, reason = "reactivated", None
        elif event.status is not None and event.status in self.purge_statuses:
            decision, reason = "marked_for_purge", PurgeReason.for_account(event.status)
        else:
            decision, reason = "kept_inactive", None
        self.counts[decision] = self.counts.get(decision, 0) + 1
        fields = {"did": event.did, "status": event.status, "decision": decision, "seq": seq}
        extra = {"event": "account_status", "fields": fields}
        if decision == "kept_inactive":
            log.info("account %s is %s: kept (not a purging status)", event.did, event.status, extra=extra)
            return
        self.purges[event.did] = (seq, reason)
        outcome = "purged at the next export" if reason else "a pending purge, if any, is cancelled"
        status = event.status or "active"
        log.info("account %s %s at seq %s: %s", event.did, status, seq, outcome, extra=extra)
