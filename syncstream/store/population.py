"""The population the store keeps: the users the user files list, the DIDs purged for good,
the follows study users were seen making, and the version purges bump."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from syncstream.registry.population import Population
from syncstream.store.connection import Database
from syncstream.store.kinds import PurgeReason, UserKind

__all__ = ["PopulationState"]


class PopulationState:
    """Tables ``users``, ``purged_dids`` and ``tracked_follows``; the population versions."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._db = database.db

    def replace(self, kind: UserKind, dids: Iterable[str]) -> None:
        """The users of ``kind`` are ``dids`` from now on."""
        with self._database.transaction():
            self._db.execute("DELETE FROM users WHERE kind = ?", (kind,))
            self._db.executemany(
                "INSERT OR IGNORE INTO users (did, kind) VALUES (?, ?)", ((d, kind) for d in dids)
            )

    def current(self, *, tracked_follows: bool = False) -> Population:
        """The study and in-network sets; with ``tracked_follows``, the in-network set also
        holds every account a study user was seen following on the stream."""
        rows = self._db.execute("SELECT did, kind FROM users").fetchall()
        in_network = {d for d, k in rows if k == UserKind.IN_NETWORK}
        if tracked_follows:
            in_network.update(s for (s,) in self._db.execute("SELECT subject FROM tracked_follows"))
        return Population(
            study=frozenset(d for d, k in rows if k == UserKind.STUDY),
            in_network=frozenset(in_network),
            withdrawn=self.purged(),
        )

    def tracked_follows(self) -> dict[str, tuple[str, str]]:
        """Follow URI -> (follower, subject) for the follows study users were seen making."""
        rows = self._db.execute("SELECT uri, follower, subject FROM tracked_follows")
        return {uri: (follower, subject) for uri, follower, subject in rows}

    def track_follows(self, follows: Mapping[str, tuple[str, str] | None]) -> None:
        """Follow URI -> (follower, subject) seen made, or None when unfollowed."""
        with self._database.transaction():
            for uri, follow in follows.items():
                if follow is None:
                    self._db.execute("DELETE FROM tracked_follows WHERE uri = ?", (uri,))
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO tracked_follows (uri, follower, subject) VALUES (?, ?, ?)",
                        (uri, *follow),
                    )

    def purged(self) -> frozenset[str]:
        """The DIDs purged for good: a user file does not bring them back."""
        return frozenset(did for (did,) in self._db.execute("SELECT did FROM purged_dids"))

    def purged_history(self) -> list[tuple[float, str]]:
        """Each purged DID's (when, why), oldest first; not the DIDs themselves."""
        rows = self._db.execute("SELECT purged_at, reason FROM purged_dids ORDER BY purged_at")
        return [(when, reason) for when, reason in rows]

    def withdraw(self, dids: Iterable[str], reason: PurgeReason, now: float) -> None:
        """The DIDs leave the population for good (remembered as purged, their tracked follows
        gone); the population version is bumped, for a running writer to see."""
        with self._database.transaction():
            for did in dids:
                self._db.execute("DELETE FROM users WHERE did = ?", (did,))
                self._db.execute(
                    "INSERT OR IGNORE INTO purged_dids (did, purged_at, reason) VALUES (?, ?, ?)",
                    (did, now, reason),
                )
                self._db.execute("DELETE FROM tracked_follows WHERE follower = ? OR subject = ?", (did, did))
            self._database.set_meta("population_version", self.version() + 1)

    def unpurge(self, did: str) -> bool:
        """Let a purged DID be enrolled again; whether it was purged."""
        with self._database.transaction():
            forgotten: int = self._db.execute("DELETE FROM purged_dids WHERE did = ?", (did,)).rowcount
        return forgotten > 0

    def version(self) -> int:
        """The population version: each purge bumps it."""
        return int(self._database.meta_real("population_version") or 0)

    def seen_version(self) -> int:
        """The population version a running writer last applied (committed with its cursor)."""
        return int(self._database.meta_real("writer_population_version") or 0)

    def see_version(self, version: int) -> None:
        with self._database.transaction():
            self._database.set_meta("writer_population_version", version)
