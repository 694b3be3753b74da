"""The verified stream (``--verify study|population``): firehose commits checked against their
authors' keys, as the Sync spec asks of a consumer.

For each ``#commit`` and ``#sync`` of a DID in scope (study users, or the whole population):

- the signed commit must be version 3, of the frame's DID, signed by the DID document's key
  (``syncstream.verify``: keys cached per DID, refreshed once on a failure, dropped on the
  DID's ``#identity``). One that fails is counted ``bad_signature`` and not written.
- A key that cannot be had (the PLC directory down) is no verdict: the commit is written with
  ``verified`` null and counted ``key_unavailable``, never dropped, never held.
- A ``#commit`` whose ``rev`` is not newer than the last one written for its DID is counted
  ``stale_rev`` and not written; one whose ``since`` is not the last ``rev`` seen means commits
  were missed: the DID (a study user) is marked for a fresh backfill (``since_mismatch``).

DIDs out of scope are passed through unchecked (``verified`` null). The last revs are kept
for this run, per DID in scope.
"""

from __future__ import annotations

import logging

import msgspec

from syncstream.firehose.decode import Decoded, signed_commit
from syncstream.registry.population import Population
from syncstream.verify import DidDocuments, verify_commit

__all__ = ["SCOPES", "Checked", "StreamVerifier"]

log = logging.getLogger("syncstream.write")

SCOPES = ("none", "study", "population")


class Checked(msgspec.Struct, frozen=True):
    decoded: Decoded | None  # None: refused, not written
    resync: str | None = None  # a study user whose repository must be backfilled again


class StreamVerifier:
    def __init__(self, documents: DidDocuments, scope: str) -> None:
        if scope not in SCOPES[1:]:
            raise ValueError(f"verification scope {scope!r}")
        self.documents = documents
        self.scope = scope
        self.counts: dict[str, int] = {}
        self.last_rev: dict[str, str] = {}
        self._logged: set[str] = set()

    def _count(self, what: str, did: str, detail: str | None = None) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        if what not in self._logged and what != "verified":
            self._logged.add(what)
            log.warning(
                "verification: %s for %s%s; further ones are only counted", what, did,
                f" ({detail})" if detail else "",
                extra={"event": "verification", "fields": {"outcome": what, "did": did, "detail": detail}},
            )  # fmt: skip

    def in_scope(self, did: str, population: Population) -> bool:
        return did in population.study or (self.scope == "population" and did in population.in_network)

    def check(self, decoded: Decoded, population: Population) -> Checked:
        commit, event = decoded.commit, decoded.event
        if event is not None and event.event == "identity":
            self.documents.forget(event.did)  # its key may have changed
            return Checked(decoded)
        if commit is not None:
            did, rev = commit.repo, commit.rev
        elif event is not None and event.event == "sync":
            did, rev = event.did, event.rev or ""
        else:
            return Checked(decoded)
        if not self.in_scope(did, population):
            return Checked(decoded)
        last = self.last_rev.get(did)
        if commit is not None and last is not None and rev <= last:
            self._count("stale_rev", did, f"rev {rev!r} after {last!r}")
            return Checked(None)
        verdict = verify_commit(self.documents, did, signed_commit(decoded))
        if verdict.verified is False:
            self._count("bad_signature", did, verdict.reason)
            return Checked(None)
        if verdict.verified is None:
            self._count("key_unavailable", did, verdict.reason)
        else:
            self._count("verified", did)
        resync = None
        if commit is not None and last is not None and decoded.since is not None and decoded.since != last:
            self._count("since_mismatch", did, f"since {decoded.since!r}, last rev seen {last!r}")
            resync = did if did in population.study else None
        self.last_rev[did] = rev
        if commit is not None:
            commit = msgspec.structs.replace(commit, verified=verdict.verified)
        return Checked(msgspec.structs.replace(decoded, commit=commit), resync)
