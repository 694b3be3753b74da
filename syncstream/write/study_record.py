"""The writer's part of the study's record: coverage and membership, fed each frame processed
and taken, with the cursor, into the state's commit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from syncstream.listing import new_id
from syncstream.store import CURSOR, Change, Closing, CoverageRow, Opening, UserKind
from syncstream.write.coverage import CoverageTracker
from syncstream.write.membership import MembershipTracker

if TYPE_CHECKING:
    from syncstream.firehose.decode import Decoded
    from syncstream.registry.population import Population
    from syncstream.write.context import CacheWriteContext

__all__ = ["StudyRecord"]


class StudyRecord:
    """One writer run's record of ``source``: ``coverage`` (the seqs it processed, the gaps it
    knows of) and ``membership`` (the spells of ``population``, the one it starts with)."""

    def __init__(
        self,
        context: CacheWriteContext,
        source: str,
        population: Population,
        *,
        resume: int | Literal["cursor", "live"],
    ) -> None:
        state = context.state
        self.writer_run = new_id()  # this run's name in the coverage record
        self.coverage = CoverageTracker(
            self.writer_run,
            source,
            stored=state.cursors.get(source),
            stored_time=state.coverage.last_time(source),
            resume=resume,
            replay=source == CURSOR,
        )
        self.membership = MembershipTracker(
            state,
            source,
            population,
            reenrolled=context.reenrolled,
            followed=population.in_network - state.population.current().in_network,
        )

    def frame(self, decoded: Decoded, seq: int | None, *, skipped: int) -> None:
        """A frame being processed: its seq and relay time, or the relay's word that the cursor
        is outdated."""
        if seq is not None:
            event = decoded.commit or decoded.event
            time = None if event is None else event.time
            self.coverage.frame(seq, time, skipped=skipped)
            self.membership.frame(seq, time)
        elif decoded.kind == "info" and decoded.name == "OutdatedCursor":
            self.coverage.outdated()

    def followed(self, moved: tuple[str, bool] | None) -> None:
        """A study user's follow or its delete (``--track-follows``) moved an account in or out
        of the in-network set (``TrackedPopulation.follow``'s answer)."""
        if moved is not None:
            change = self.membership.enter if moved[1] else self.membership.leave
            change(moved[0], UserKind.IN_NETWORK, Change.TRACK_FOLLOWS)

    def moved(self, before: Population, after: Population, how: Change) -> Population:
        """The population changed (a reload, a purge): who came in or went out; ``after``."""
        self.membership.moved(before, after, how)
        return after

    def commit(self, cursor: int | None) -> tuple[list[CoverageRow], list[Opening | Closing]]:
        """What to store with ``cursor``: the rows and changes of the frames it covers."""
        return self.coverage.commit(cursor), self.membership.commit(cursor)
