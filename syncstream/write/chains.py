"""The writer's view of the verified accounts' chains (``syncstream.store.chains``): each DID's
link read from the store once, moved on in memory, and written with the cursor that covers it.

A DID being backfilled has its live commits held (verified, not yet written): its link is not
written while they are, so that a crash, which replays them from the cursor, finds the chain
where they take it up rather than past them (they would be refused as stale, and lost).

Every link the store gains is written from this view (``take``, through the writer's commit),
so once the view has seen the store without any (at its start, or having forgotten them all)
and has kept every link since, a DID it does not know has none: it is not asked for (a
verified stream of a new study would otherwise ask the store once per account).
"""

from __future__ import annotations

from collections.abc import Container

from syncstream.store.chains import Link
from syncstream.store.state import StateStore

__all__ = ["ChainView"]

_KNOWN = 1_000_000  # links kept in memory at most (the pending ones always are)


class ChainView:
    def __init__(self, state: StateStore) -> None:
        self._chains = state.chains
        self._known: dict[str, Link | None] = {}
        self.pending: dict[str, Link] = {}  # moved on since the last commit
        self._all_known = self._chains.empty()  # every stored link is in ``_known``

    def get(self, did: str) -> Link | None:
        if did in self._known:
            return self._known[did]
        link = self.pending.get(did)
        if link is None and not self._all_known:
            link = self._chains.get(did)
        if len(self._known) >= _KNOWN:
            self._known.clear()
            self._all_known = False
        self._known[did] = link
        return link

    def advance(self, did: str, link: Link) -> None:
        """``did``'s chain is at ``link`` now."""
        self._known[did] = link
        self.pending[did] = link

    def start(self, did: str, link: Link) -> None:
        """A backfill wrote ``did``'s repository at ``link``: its chain starts there unless the
        stream is already past it."""
        known = self.get(did)
        if known is None or known.rev < link.rev:
            self.advance(did, link)

    def take(self, held: Container[str]) -> dict[str, Link]:
        """The links to commit now (not those of DIDs whose commits are held)."""
        taken = {did: link for did, link in self.pending.items() if did not in held}
        for did in taken:
            del self.pending[did]
        return taken

    def forget(self) -> None:
        """Forget every link, here and in the store (a benchmark's fresh pass over one corpus)."""
        self._known.clear()
        self.pending.clear()
        self._chains.forget()
        self._all_known = True
