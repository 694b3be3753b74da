"""The write loop: frames -> decoded commits -> routed writes -> cache files, in durable batches.

The cursor is persisted only after the files of every frame it covers are on disk (flushed with
``syncfs`` on the cache's filesystem), in the same SQLite transaction as the batch's index rows
and tracked follows.

No frame stops the writer: what cannot be decoded, routed, named or written is counted by
reason, logged once with its seq, and passed over, and the cursor moves on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from syncstream.cache import sync_filesystem
from syncstream.clock import SYSTEM_CLOCK, Clock
from syncstream.errors import SyncstreamError
from syncstream.failpoints import failpoint
from syncstream.firehose.decode import AccountEvent, Commit, Decoded, RepoOp, decode_frame
from syncstream.registry.handlers import record_path
from syncstream.registry.population import Population
from syncstream.registry.records import encode_record
from syncstream.registry.types import FollowStatus, Operation
from syncstream.store import CURSOR, Change
from syncstream.timestamps import micros, utc_now
from syncstream.write.accounts import PURGE_ACCOUNT_STATUSES, AccountStatuses
from syncstream.write.chains import ChainView
from syncstream.write.context import CacheWriteContext
from syncstream.write.follows import TrackedPopulation
from syncstream.write.holds import HoldLimits, Holds
from syncstream.write.options import FLUSH_FRAMES, FLUSH_SECONDS, INDEX_RETENTION_DAYS
from syncstream.write.route import CacheWrite, route_commit, routing_table
from syncstream.write.study_record import StudyRecord
from syncstream.write.summary import WriteSummary
from syncstream.write.writes import FileWrites, InlineWrites

if TYPE_CHECKING:
    from syncstream.write.authentic import StreamVerifier

__all__ = ["CacheWriter", "WriteSummary"]

log = logging.getLogger("syncstream.write")


class CacheWriter:
    """Applies frames or decoded commits to the cache; ``flush`` makes a batch durable.

    ``track_follows`` keeps the in-network set current from the stream: a study user's follow
    adds the followee, its delete removes it (unless another study user still follows them).
    ``files`` does the file writes (default: in this process, each at once; with a helper
    process, a write is on disk by the next ``flush``).

    ``resume`` is where the stream is taken up: after the stored cursor, after a given seq,
    or (``"live"``) wherever the relay is now. ``on_flush`` is called before each durable
    commit (to flush a recording of the frames), each of ``flush_observers`` after it, with
    the flush's seconds. ``verifier`` checks commits against their authors' keys
    (``--verify``); ``hold_limits`` bound the holds of DIDs being backfilled (``hold``).
    ``record`` is the study's record (coverage, membership), stored with the cursor.
    """

    def __init__(
        self,
        context: CacheWriteContext,
        *,
        flush_frames: int = FLUSH_FRAMES,
        flush_seconds: float = FLUSH_SECONDS,
        durable: bool = True,
        track_follows: bool = False,
        on_flush: Callable[[], None] | None = None,
        files: FileWrites | None = None,
        index_retention_days: float = INDEX_RETENTION_DAYS,
        cursor_source: str = CURSOR,
        resume: int | Literal["cursor", "live"] = "cursor",
        purge_account_statuses: frozenset[str] = PURGE_ACCOUNT_STATUSES,
        hold_limits: HoldLimits | None = None,
        verifier: StreamVerifier | None = None,
        flush_observers: Sequence[Callable[[float], None]] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.context = context
        self.routes = routing_table(context.handlers)
        self._collections = self.routes.names
        # Only what a delete cannot be routed without is indexed: a create whose delete has no
        # selector of its own (a study user's or an in-network user's deletes route by author).
        handlers = context.handlers
        self._indexed = frozenset(
            key
            for key, config in handlers.items()
            if config.delete is not None and handlers[config.delete].select is None
        )
        self.index_retention = index_retention_days * 86_400
        self._clock = clock
        self._next_prune = 0.0  # the index is pruned at the first flush, then hourly
        self.file_writes: FileWrites = files if files is not None else InlineWrites(context.cache_root)
        self.flush_frames = flush_frames
        self.flush_seconds = flush_seconds
        self.durable = durable
        self.track_follows = track_follows
        self._on_flush = on_flush
        self._flush_observers = tuple(flush_observers)
        self._population = TrackedPopulation(context.state, track_follows=track_follows)
        self.cursor_source = cursor_source  # whose seqs: a replay's, or a relay host's
        self.cursor = context.state.cursors.get(cursor_source)  # the last seq committed as durable
        # the last seq processed (written, maybe not yet durable)
        self.last_seq = self.cursor if resume == "cursor" else None if resume == "live" else resume
        self.record = StudyRecord(context, cursor_source, self.population, resume=resume)
        self.last_event_time: str | None = None
        self.last_frame_wall: float | None = None  # Unix time when the last frame arrived
        self.frames: dict[str, int] = {}
        self.ops: dict[str, int] = {}
        self.files: dict[str, int] = {}
        self.rejections: dict[str, int] = {}
        self.skipped = 0
        self._pending_seq: int | None = None
        self._pending_frames = 0
        self._pending_index: dict[str, set[str]] = {}  # this batch's rows, not yet committed
        self.accounts = AccountStatuses(purge_account_statuses)
        self._resync: set[str] = set()  # study users whose #sync asks for a fresh backfill
        # DIDs being backfilled: their live commits wait here (``hold``, ``release``)
        self.holds = Holds(hold_limits if hold_limits is not None else HoldLimits(), clock=clock)
        self.verifier = verifier
        self.chains = ChainView(context.state)  # the verified accounts' last revs
        self._population_version = -1  # the first flush records the version this writer applies
        self._recorded = set(context.state.written_by.names()[0])  # handlers the state knows wrote
        self._last_flush = clock.monotonic()
        self._logged_reasons: set[str] = set()

    # frames -------------------------------------------------------------------------------

    def process_frame(self, frame: bytes) -> Decoded | None:
        """Decode and apply one frame; None when it was at or below the last processed seq."""
        try:
            decoded = decode_frame(frame, self._collections)
        except Exception as error:  # a poison pill of a kind decode_frame does not know yet
            decoded = Decoded("undecodable")
            self._reject(f"decode_error:{type(error).__name__}", f"a frame after seq {self.last_seq}")
        seq = decoded.seq
        self.last_frame_wall = self._clock.time()
        if seq is not None and self.last_seq is not None and seq <= self.last_seq:
            self.skipped += 1
            return None
        self.frames[decoded.kind] = self.frames.get(decoded.kind, 0) + 1
        self.record.frame(decoded, seq, skipped=self.skipped)
        for problem in decoded.problems:
            self._reject(problem, f"seq {seq}")
        given = decoded
        if self.verifier is not None and (decoded.commit is not None or decoded.event is not None):
            checked = self.verifier.check(decoded, self.population, self.chains)
            if checked.resync is not None:
                self._resync.add(checked.resync)
            if checked.desync is not None and seq is not None:
                self.apply_event(checked.desync, seq)  # a row of its own: the chain broke here
            decoded = checked.decoded if checked.decoded is not None else Decoded(decoded.kind, seq)
            if checked.decoded is None:
                self._reject("unverified_commit", f"seq {seq}")
        commit = decoded.commit
        if commit is not None and seq is not None and commit.repo in self.holds:
            # its backfill is running: applied once it is done, or at once past the hold's bounds
            if not self.holds.add(commit.repo, seq, commit, len(frame)):
                self.release(commit.repo)
        elif decoded.commit is not None or decoded.event is not None:
            try:
                if decoded.commit is not None:
                    self.apply_commit(decoded.commit)
                elif decoded.event is not None and seq is not None:
                    self.apply_event(decoded.event, seq)
            except SyncstreamError:  # the cache, a helper, a failpoint: not this commit's fault
                raise
            except Exception as error:  # one commit's bug or oddity must not stop the stream
                self._reject(f"route_error:{type(error).__name__}", f"seq {seq}")
                log.debug("seq %s could not be routed", seq, exc_info=True)
            if decoded.commit is not None:
                self.last_event_time = decoded.commit.time
        if seq is not None:
            self._pending_seq = self.last_seq = seq
        self._pending_frames += 1
        if self._pending_frames >= self.flush_frames or self.flush_due():
            self.flush()
        return given

    def count_frames(self, kind: str, count: int = 1) -> None:
        """Count frames that never reached ``process_frame`` (a replay's truncated tail, the
        relay's text frames) with those that did."""
        self.frames[kind] = self.frames.get(kind, 0) + count

    def process_frames(self, frames: Iterable[bytes]) -> WriteSummary:
        for frame in frames:
            self.process_frame(frame)
        self.flush()
        return self.summary()

    # commits ------------------------------------------------------------------------------

    def apply_commit(self, commit: Commit) -> list[CacheWrite]:
        """Route and write one decoded commit (the library entry point for other pipelines)."""
        ops = self.ops
        for op in commit.ops:
            ops[op.action] = ops.get(op.action, 0) + 1
        return self._write(commit)

    def hold(self, did: str) -> None:
        """Hold ``did``'s live commits from now on (its backfill starts): the cursor stays
        before the first of them until they are released. Past the hold's bounds they are
        applied at once, and its owner finds why in ``holds.take_overflows()``."""
        self.holds.start(did)

    def release(self, did: str) -> int:
        """Apply ``did``'s held commits, in order (its backfill is done, or failed); how many."""
        commits = self.holds.end(did)
        for commit in commits:
            self.apply_commit(commit)
        return len(commits)

    def forget_held(self) -> int:
        """Drop every held commit unapplied (a stop that cannot write any more): the cursor
        never passed them, so the next start replays them. How many."""
        return self.holds.drop_all()

    def apply_event(self, event: AccountEvent, seq: int) -> list[CacheWrite]:
        """Route and write an ``#account``, ``#identity`` or ``#sync`` event: kept when its DID
        is a study or an in-network user, as a one-op commit of the frame's "collection". A
        study user's account seen deleted is purged by the next export."""
        population = self.population
        if event.did in population.study:
            group = "study"
        elif event.did in population.in_network:
            group = "in_network"
        else:
            return []
        fields = {"population": group, "active": event.active, "status": event.status, "handle": event.handle}
        record = {name: value for name, value in fields.items() if value is not None}
        op = RepoOp("create", f"#{event.event}", str(seq), None, record)
        writes = self._write(Commit(seq, event.did, event.rev or "", event.time, (op,)))
        if writes and event.event == "account":
            self.accounts.decide(event, seq)
        if event.event == "sync" and group == "study":
            self._resync.add(event.did)  # its repository must be backfilled again
        return writes

    def _write(self, commit: Commit) -> list[CacheWrite]:
        ctx = self.context
        if commit.repo in self.population.withdrawn:
            # A withdrawal sticks: nothing the account authors is collected again, whatever it
            # points at (a like or a reply to a study user's post included), until re-enrolled.
            self._reject("withdrawn_account", f"a commit at seq {commit.seq}")
            return []
        deleted: list[str] = []
        for op in commit.ops:
            if op.action == "delete" and op.collection in self._collections:
                deleted.append(f"at://{commit.repo}/{op.collection}/{op.rkey}")
        prior = self._cached_keys(deleted) if deleted else {}
        writes, rejections = route_commit(self.routes, commit, self.population, prior, utc_now())
        for rejection in rejections:
            self._reject(rejection.reason, rejection.uri)
        if writes and micros(commit.time) is None:
            # The export turns event_time into a timestamp with the same parser: a time it
            # could not read would make the file a row that cannot be written.
            for _, record in writes:
                self._reject("invalid_event_time", f"{record.uri} (seq {commit.seq}, time {commit.time!r})")
            return []
        files = self.files
        write = self.file_writes.write
        for key, record in writes:
            config = ctx.handlers[key]
            write(record_path(ctx.cache_root, config, record), encode_record(record))
            name = str(key)  # a built-in key is a StrEnum: counted by its name
            files[name] = files.get(name, 0) + 1
            if key in self._indexed and record.operation != Operation.DELETE:
                self._pending_index.setdefault(record.uri, set()).add(key)
            if self.track_follows and config.follow_status == FollowStatus.FOLLOWER:
                self.record.followed(
                    self._population.follow(record.uri, record.author_did, record.subject_did)
                )
        return writes

    @property
    def population(self) -> Population:
        """The study and in-network sets this writer routes by, kept current (``track_follows``)."""
        return self._population.population

    def reload_population(self) -> Population:
        """Re-read the population from the state store (after its user sets were replaced,
        as on SIGHUP): who came in or went out is recorded as such."""
        return self.record.moved(self.population, self._population.reload(), Change.SIGHUP)

    def event_lag(self) -> float | None:
        """Seconds between the last commit's time and its receipt (None before any commit)."""
        if self.last_event_time is None or self.last_frame_wall is None:
            return None
        stamp = micros(self.last_event_time)
        return None if stamp is None else self.last_frame_wall - stamp / 1e6

    def _population_changed(self) -> int | None:
        """The population's new version when a purge changed it since the last flush (the
        population is reloaded, and purged accounts' follows forgotten), else None. Called
        after the batch's writes are drained: once this version is committed, nothing written
        since collects a purged account."""
        version = self.context.state.population.version()
        if version == self._population_version:
            return None
        self._population.forget(self.context.state.population.purged())  # (the sets: unchanged)
        self.record.moved(self.population, self._population.reload(), Change.PURGE)
        self._population_version = version
        return version

    def _cached_keys(self, uris: list[str]) -> dict[str, frozenset[str]]:
        found = dict(self.context.state.index.handlers_of(uris))
        for uri in uris:
            pending = self._pending_index.get(uri)
            if pending:
                found[uri] = found.get(uri, frozenset()) | pending
        return found

    def _reject(self, reason: str, where: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1
        if reason not in self._logged_reasons:
            self._logged_reasons.add(reason)
            log.warning(
                "rejected (%s): %s; further rejections of this kind are only counted", reason, where,
                extra={"event": "rejected", "fields": {"reason": reason, "where": where}},
            )  # fmt: skip

    # durability ---------------------------------------------------------------------------

    def flush_due(self) -> bool:
        return self._pending_frames > 0 and self._clock.monotonic() - self._last_flush >= self.flush_seconds

    def flush(self) -> None:
        """Make the written files durable, then commit the cursor and the rows that cover them."""
        started = time.perf_counter()
        for path, reason in self.file_writes.drain():
            self._reject(reason, f"{path} (seq <= {self.last_seq})")
        version = self._population_changed()
        written = self.files.keys() - self._recorded  # handlers that wrote for the first time
        if (
            self._pending_frames == 0
            and self._pending_seq is None
            and not self._pending_index
            and version is None
            and not written
            and all(did in self.holds for did in self.chains.pending)
        ):
            return
        if self._on_flush is not None:
            self._on_flush()
        if self.durable:
            sync_filesystem(self.context.cache_root)
        failpoint("write.files_durable")
        cursor = self._pending_seq
        if cursor is not None:  # not past a commit still held
            cursor = self.holds.cursor_bound(cursor)
        coverage, membership = self.record.commit(cursor)
        self.context.state.commit(
            cursor,
            ((uri, key) for uri, keys in self._pending_index.items() for key in keys),
            self._population.pending,
            account_purges=self.accounts.purges,
            population_version=version,
            cursor_source=self.cursor_source,
            resync=self._resync,
            written=written,
            chains=self.chains.take(self.holds),
            coverage=coverage,
            membership=membership,
        )
        self._recorded |= written
        self.accounts.purges.clear()
        self._resync.clear()
        failpoint("write.cursor_stored")
        now = self._clock.monotonic()
        if now >= self._next_prune:
            self._next_prune = now + 3600
            self.context.state.index.prune(self._clock.time() - self.index_retention)
        self._pending_index.clear()
        self._population.pending.clear()
        if cursor is not None:
            self.cursor = cursor
        if cursor == self._pending_seq:  # else committed later, once nothing holds it back
            self._pending_seq = None
        self._pending_frames = 0
        self._last_flush = self._clock.monotonic()
        seconds = time.perf_counter() - started
        for observe in self._flush_observers:
            observe(seconds)

    def summary(self) -> WriteSummary:
        return WriteSummary(
            frames=dict(self.frames),
            ops=dict(self.ops),
            files=dict(self.files),
            rejections=dict(self.rejections),
            skipped_below_cursor=self.skipped,
            cursor=self.cursor,
            accounts=dict(self.accounts.counts),
            verification=dict(self.verifier.counts) if self.verifier is not None else {},
        )
