"""The population the writer routes by: the stored study and in-network sets, the in-network
set extended by the study users' follows seen in the stream (``--track-follows``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncstream.registry.population import Population

if TYPE_CHECKING:
    from syncstream.store import StateStore

__all__ = ["TrackedPopulation"]

Follow = tuple[str, str]  # (follower, subject)


class TrackedPopulation:
    """``population`` is current: a study user's follow adds the followee to the in-network
    set, its delete removes it (unless another study user still follows them). ``pending``
    is what the batch changed (a follow by its URI, None for a removed one), for the store."""

    def __init__(self, state: StateStore, *, track_follows: bool) -> None:
        self._state = state
        self.population: Population = state.population.current(tracked_follows=track_follows)
        self._follows: dict[str, Follow] = state.population.tracked_follows() if track_follows else {}
        self._file_in_network = state.population.current().in_network
        self.pending: dict[str, Follow | None] = {}

    def follow(self, uri: str, follower: str, subject: str | None) -> tuple[str, bool] | None:
        """A follow record (``subject`` None: its delete) seen in the stream; (the account,
        whether it is in-network now) when that changed."""
        if subject is not None and subject in self.population.withdrawn:
            return None  # a withdrawal sticks: a follow does not bring the account back
        if subject is not None:  # a follow
            self._follows[uri] = self.pending[uri] = (follower, subject)
        elif uri in self._follows:  # its delete
            subject = self._follows.pop(uri)[1]
            self.pending[uri] = None
        else:
            return None
        was = subject in self.population.in_network
        self._update(self.population)
        now = subject in self.population.in_network
        return None if was == now else (subject, now)

    def reload(self) -> Population:
        """Re-read the population from the state store (after its user sets were replaced)."""
        stored = self._state.population.current()
        self._file_in_network = stored.in_network
        self._update(stored)
        return self.population

    def forget(self, purged: frozenset[str]) -> None:
        """Forget the follows by or of purged accounts (the store removed its rows of them)."""
        for follows in (self._follows, self.pending):
            for uri, follow in list(follows.items()):
                if follow is not None and (follow[0] in purged or follow[1] in purged):
                    del follows[uri]

    def _update(self, population: Population) -> None:
        followed = {subject for _, subject in self._follows.values()}
        self.population = population._replace(in_network=frozenset(self._file_in_network | followed))
