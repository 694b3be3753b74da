"""Who the writer routes by, as spells of membership: each account's entries into the
population and exits from it, at the seqs where they took effect, kept until the cursor
covers them.

An account that comes in opens its spell at the next frame processed (the first processed
with it in); one that goes out closes its spell at the frame being processed, or the last one
processed (the last with it in). At start the stored open spells are compared with the
population the writer starts with: those still in, on the same source, carry on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from syncstream.registry.population import Population
from syncstream.store import Change, Closing, Opening, UserKind

if TYPE_CHECKING:
    from syncstream.store import StateStore

__all__ = ["MembershipTracker"]

Key = tuple[str, UserKind]


def _members(population: Population) -> dict[Key, None]:
    keys: dict[Key, None] = dict.fromkeys((did, UserKind.STUDY) for did in population.study)
    keys.update(dict.fromkeys((did, UserKind.IN_NETWORK) for did in population.in_network))
    return keys


class MembershipTracker:
    """The spells of one writer run on ``source``: ``population`` is what it starts with,
    ``reenrolled`` the DIDs enrolled again at this start and ``followed`` the in-network DIDs
    that only tracked follows put there."""

    def __init__(
        self,
        state: StateStore,
        source: str,
        population: Population,
        *,
        reenrolled: Iterable[str] = (),
        followed: Iterable[str] = (),
    ) -> None:
        self.source = source
        again, tracked = frozenset(reenrolled), frozenset(followed)
        self._waiting: dict[Key, Change] = {}  # in, from the next frame on
        self._changes: list[Opening | Closing] = []  # at known seqs, in order
        self._at_start: list[Closing] = []  # spells of other sources: stored at the first commit
        self._seq: int | None = state.cursors.get(source)
        self._time: str | None = state.coverage.last_time(source)
        for key in _members(population):
            did, role = key
            self._waiting[key] = (
                Change.REENROL
                if did in again
                else Change.TRACK_FOLLOWS
                if role == UserKind.IN_NETWORK and did in tracked
                else Change.USERS_FILE
            )
        for spell in state.membership.spells(open_only=True):
            key = (spell.did, spell.role)
            if key in self._waiting and spell.source == source:
                del self._waiting[key]  # still in: the spell carries on
                continue
            ended = state.cursors.get(spell.source)
            left = (
                Change.SOURCE
                if key in self._waiting
                else Change.TRACK_FOLLOWS
                if spell.how == Change.TRACK_FOLLOWS
                else Change.USERS_FILE
            )
            self._at_start.append(
                Closing(
                    spell.did, spell.role, max(ended or spell.from_seq, spell.from_seq),
                    state.coverage.last_time(spell.source), left,
                )
            )  # fmt: skip

    def frame(self, seq: int, time: str | None) -> None:
        """A frame at ``seq`` is being processed: the accounts waiting come in at it."""
        self._seq, self._time = seq, time
        if self._waiting:
            waiting, self._waiting = self._waiting, {}
            self._changes.extend(
                Opening(did, role, self.source, seq, time, how) for (did, role), how in waiting.items()
            )

    def enter(self, did: str, role: UserKind, how: Change) -> None:
        self._waiting.setdefault((did, role), how)

    def leave(self, did: str, role: UserKind, how: Change) -> None:
        if self._waiting.pop((did, role), None) is not None:
            return  # it came in and went out between two frames: no frame had it in
        if self._seq is not None:
            self._changes.append(Closing(did, role, self._seq, self._time, how))

    def moved(self, before: Population, after: Population, how: Change) -> None:
        """The population changed from ``before`` to ``after`` (a reload, a purge)."""
        for role, was, now in (
            (UserKind.STUDY, before.study, after.study),
            (UserKind.IN_NETWORK, before.in_network, after.in_network),
        ):
            if was is now:
                continue
            for did in sorted(was - now):
                self.leave(did, role, how)
            for did in sorted(now - was):
                self.enter(did, role, how)

    def commit(self, cursor: int | None) -> list[Opening | Closing]:
        """The changes to store with ``cursor``: those at seqs it covers."""
        found: list[Opening | Closing] = list(self._at_start)
        self._at_start.clear()
        if cursor is None:
            return found
        count = 0
        for change in self._changes:
            if (change.from_seq if isinstance(change, Opening) else change.to_seq) > cursor:
                break
            count += 1
        found += self._changes[:count]
        del self._changes[:count]
        return found
