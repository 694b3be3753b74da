"""The verified stream (``--verify study|population``): firehose commits checked end to end, as
the Sync spec (1.1) asks of a consumer that trusts neither the relay nor a PDS.

For each ``#commit`` and ``#sync`` of a DID in scope (study users, or the whole population),
in this order, the first that fails naming the outcome counted (the commit is then refused,
not written, and the writer counts ``unverified_commit``):

1. its ``rev`` is a TID at most 5 minutes in the future (``future_rev``);
2. the proof (``syncstream.firehose.proof``): every block hashes to its CID
   (``bad_block_hash``), the signed commit is the frame's ``commit`` and names its ``repo`` and
   ``rev`` (``commit_mismatch``), the ops have their shapes (``bad_op``), the signed tree holds
   each op's value at its path (``op_not_in_tree``), the tree's nodes needed are there and
   well formed (``incomplete_proof``), and the ops inverted give ``prevData``
   (``prev_data_mismatch``);
3. a ``#commit``'s rev is newer than the last verified one of its DID (``stale_rev``);
4. the signature, by the key of the DID's document (``syncstream.verify``; ``bad_signature``).

A key that cannot be had is no verdict: the commit is written with ``verified`` null and
counted ``key_unavailable``. A commit without ``prevData`` (a PDS that does not send it) gets
every check but the inversion, is counted ``paths_only`` and written with ``verified`` null;
``verified`` is true (``verified``) only when signature, hashes and the whole proof held.

The chain: each DID's last verified rev and MST root are kept in the state store
(``syncstream.write.chains``). A ``#commit`` whose ``since`` is not that rev, or whose
``prevData`` is not that root, means commits were missed: it is still written, and the account
is counted ``desynchronized``, an ``account_event`` row of event ``desync`` is written for it
(``status`` says which did not follow on), and a study user is queued for a fresh backfill.

DIDs out of scope are passed through unchecked (``verified`` null).
"""

from __future__ import annotations

import logging

import msgspec

from syncstream.clock import SYSTEM_CLOCK, Clock
from syncstream.errors import ProofError
from syncstream.firehose.decode import AccountEvent, Decoded
from syncstream.firehose.proof import prove
from syncstream.registry.population import Population
from syncstream.registry.syntax import is_tid
from syncstream.store.chains import Link
from syncstream.verify import DidDocuments, verify_commit
from syncstream.write.chains import ChainView

__all__ = ["FUTURE_REV_SECONDS", "SCOPES", "Checked", "StreamVerifier", "tid_micros"]

log = logging.getLogger("syncstream.write")

SCOPES = ("none", "study", "population")
FUTURE_REV_SECONDS = 300.0  # a rev further ahead than this is refused (a clock, or a forgery)
_BASE32_SORTABLE = {c: i for i, c in enumerate("234567abcdefghijklmnopqrstuvwxyz")}


def tid_micros(tid: str) -> int:
    """The microseconds since the epoch a TID stands for (its top 53 bits)."""
    value = 0
    for char in tid:
        value = value * 32 + _BASE32_SORTABLE[char]
    return value >> 10


class Checked(msgspec.Struct, frozen=True):
    decoded: Decoded | None  # None: refused, not written
    resync: str | None = None  # a study user whose repository must be backfilled again
    desync: AccountEvent | None = None  # the account's chain broke: written as its own event


class StreamVerifier:
    def __init__(self, documents: DidDocuments, scope: str, *, clock: Clock = SYSTEM_CLOCK) -> None:
        if scope not in SCOPES[1:]:
            raise ValueError(f"verification scope {scope!r}")
        self.documents = documents
        self.scope = scope
        self.clock = clock
        self.counts: dict[str, int] = {}
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

    def _refuse(self, what: str, did: str, detail: str | None = None) -> Checked:
        self._count(what, did, detail)
        return Checked(None)

    def check(self, decoded: Decoded, population: Population, chains: ChainView) -> Checked:
        """``decoded`` as it may be written (None: refused), and what its chain asks for.
        Never raises for what a frame holds: a forged or malformed one is a counted refusal."""
        try:
            return self._check(decoded, population, chains)
        except Exception as error:  # a check's oddity of a kind not named yet: still one refusal
            did = decoded.commit.repo if decoded.commit is not None else "?"
            return self._refuse("unverifiable", did, f"{type(error).__name__}: {error}")

    def _check(self, decoded: Decoded, population: Population, chains: ChainView) -> Checked:
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
        if not is_tid(rev):
            return self._refuse("future_rev", did, f"rev {rev!r} is not a TID")
        ahead = tid_micros(rev) / 1e6 - self.clock.time()
        if ahead > FUTURE_REV_SECONDS:
            return self._refuse("future_rev", did, f"rev {rev!r} is {ahead:.0f}s in the future")
        try:
            proved = prove(decoded, did, rev if commit is not None else event.rev if event else None)
        except ProofError as error:
            return self._refuse(error.reason, did, str(error))
        last = chains.get(did)
        if commit is not None and last is not None and rev <= last.rev:
            return self._refuse("stale_rev", did, f"rev {rev!r} after {last.rev!r}")
        verdict = verify_commit(self.documents, did, proved.commit)
        if verdict.verified is False:
            return self._refuse("bad_signature", did, verdict.reason)
        if verdict.verified is None:
            self._count("key_unavailable", did, verdict.reason)
        elif commit is not None and not proved.inverted:
            self._count(
                "paths_only", did, "the frame has no prevData: its ops were checked at their paths only"
            )
        else:
            self._count("verified", did)
        desync = None
        if commit is not None and last is not None:
            broke = "since_mismatch" if decoded.since != last.rev else None
            if broke is None and decoded.prev_data is not None and last.data not in (None, decoded.prev_data):
                broke = "prev_data_mismatch"
            if broke is not None:
                detail = f"since {decoded.since!r} after rev {last.rev!r}" if broke == "since_mismatch" else (
                    "prevData is not the root of the last verified commit")  # fmt: skip
                self._count("desynchronized", did, detail)
                desync = AccountEvent("desync", did, commit.time, status=broke, rev=rev)
        if last is None or rev > last.rev:
            chains.advance(did, Link(rev, proved.data))
        resync = did if desync is not None and did in population.study else None
        if commit is None:
            return Checked(decoded, resync)
        verified = True if verdict.verified is True and proved.inverted else None
        commit = msgspec.structs.replace(commit, verified=verified)
        return Checked(msgspec.structs.replace(decoded, commit=commit), resync, desync)
