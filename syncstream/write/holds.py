"""The live commits of DIDs being backfilled, held until their backfill is done or fails.

From the moment a DID's backfill starts, its live commits wait here, in order, and the cursor
stays before the first of them, so that a crash replays them. A hold is bounded in commits and
bytes (past them it overflows: its commits are applied as live ones at once, and its backfill
fails) and in seconds (a backfill that outlives them fails).
"""

from __future__ import annotations

import msgspec

from syncstream.clock import SYSTEM_CLOCK, Clock
from syncstream.firehose.decode import Commit

__all__ = ["HoldLimits", "Holds"]


class HoldLimits(msgspec.Struct, frozen=True, kw_only=True):
    """How much of a DID's live stream waits while its repository is backfilled."""

    commits: int = 10_000
    bytes: int = 32 << 20  # of frames
    seconds: float = 300.0


class Holds:
    """The held DIDs, each with its commits, the seq of the first, their bytes and its start."""

    def __init__(self, limits: HoldLimits, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.limits = limits
        self._clock = clock
        self._commits: dict[str, list[Commit]] = {}
        self._first_seq: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._since: dict[str, float] = {}  # monotonic
        self._overflows: dict[str, str] = {}  # DIDs whose hold overflowed: why

    def __contains__(self, did: object) -> bool:
        return did in self._commits

    def dids(self) -> list[str]:
        """The held DIDs, in the order their holds began."""
        return list(self._commits)

    def start(self, did: str) -> None:
        self._commits.setdefault(did, [])
        self._since.setdefault(did, self._clock.monotonic())

    def add(self, did: str, seq: int, commit: Commit, size: int) -> bool:
        """Hold a held DID's commit (from a frame of ``size`` bytes); False when this passed
        the hold's bounds (the caller releases it; ``take_overflows`` says why)."""
        commits = self._commits[did]
        commits.append(commit)
        self._first_seq.setdefault(did, seq)
        size = self._bytes[did] = self._bytes.get(did, 0) + size
        limits = self.limits
        if len(commits) <= limits.commits and size <= limits.bytes:
            return True
        self._overflows[did] = (
            f"its live commits held during the backfill passed the bound of {limits.commits:,} "
            f"commits or {limits.bytes:,} bytes ({len(commits):,} commits, {size:,} bytes)"
        )
        return False

    def end(self, did: str) -> list[Commit]:
        """End ``did``'s hold: its commits, in order, for the caller to apply."""
        self._first_seq.pop(did, None)
        self._bytes.pop(did, None)
        self._since.pop(did, None)
        return self._commits.pop(did, [])

    def drop_all(self) -> int:
        """End every hold, dropping its commits (a stop that cannot write any more); how many
        were dropped. The cursor stays bound before them, so the next start replays them."""
        dropped = sum(len(commits) for commits in self._commits.values())
        self._commits.clear()
        self._bytes.clear()
        self._since.clear()
        return dropped

    def cursor_bound(self, cursor: int) -> int:
        """``cursor``, or the seq before the first commit still held if that is earlier."""
        return min(cursor, min(self._first_seq.values()) - 1) if self._first_seq else cursor

    def take_overflows(self) -> dict[str, str]:
        """The DIDs whose holds overflowed since the last call, with why."""
        overflows, self._overflows = self._overflows, {}
        return overflows

    def outlived(self) -> list[str]:
        """The held DIDs held longer than ``limits.seconds``."""
        now, limit = self._clock.monotonic(), self.limits.seconds
        return [did for did, since in self._since.items() if now - since > limit]
