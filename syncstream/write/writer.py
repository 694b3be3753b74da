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
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec

from syncstream.cache import sync_filesystem
from syncstream.errors import SyncstreamError
from syncstream.failpoints import failpoint
from syncstream.firehose.decode import AccountEvent, Commit, Decoded, RepoOp, decode_frame
from syncstream.registry.handlers import record_path
from syncstream.registry.population import Population
from syncstream.registry.records import encode_record
from syncstream.registry.types import FollowStatus, Operation
from syncstream.store import CURSOR, PurgeReason
from syncstream.timestamps import micros
from syncstream.write.context import CacheWriteContext
from syncstream.write.route import CacheWrite, route_commit, routing_table
from syncstream.write.writes import FileWrites, InlineWrites

if TYPE_CHECKING:
    from syncstream.write.authentic import StreamVerifier

__all__ = ["PURGE_ACCOUNT_STATUSES", "CacheWriter", "HoldLimits", "WriteSummary", "utc_now"]

log = logging.getLogger("syncstream.write")

# An account with one of these statuses is purged at the next export unless it is reactivated
# first (the Account spec: ``deleted`` is for good, ``takendown`` by the service; a
# ``deactivated`` account, or one moving between PDSes, comes back with its data).
PURGE_ACCOUNT_STATUSES = frozenset({"deleted", "takendown"})


_second: list[object] = [None, ""]  # the last whole second formatted, and its text


def utc_now() -> str:
    """Now, UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; the seconds part is formatted once a second."""
    now = time.time_ns()
    seconds, micros = divmod(now // 1000, 1_000_000)
    if _second[0] != seconds:
        _second[0] = seconds
        _second[1] = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{micros:06d}Z"


class WriteSummary(msgspec.Struct, kw_only=True):
    frames: dict[str, int]
    ops: dict[str, int]
    files: dict[str, int]
    rejections: dict[str, int]
    skipped_below_cursor: int
    cursor: int | None
    accounts: dict[str, int] = msgspec.field(default_factory=dict)  # status decisions, by kind
    verification: dict[str, int] = msgspec.field(default_factory=dict)  # with --verify: outcomes


class HoldLimits(msgspec.Struct, frozen=True, kw_only=True):
    """How much of a DID's live stream waits while its repository is backfilled."""

    commits: int = 10_000
    bytes: int = 32 << 20  # of frames
    seconds: float = 300.0  # enforced by the backfill, which owns the clock of its fetches


class CacheWriter:
    """Applies frames or decoded commits to the cache; ``flush`` makes a batch durable.

    ``track_follows`` keeps the in-network set current from the stream: a study user's follow
    adds the followee, its delete removes it (unless another study user still follows them).
    ``files`` does the file writes (default: in this process, each at once; with a helper
    process, a write is on disk by the next ``flush``).
    """

    def __init__(
        self,
        context: CacheWriteContext,
        *,
        flush_frames: int = 5000,
        flush_seconds: float = 2.0,
        durable: bool = True,
        track_follows: bool = False,
        on_flush: Callable[[], None] | None = None,
        files: FileWrites | None = None,
        index_retention_days: float = 30.0,
        cursor_source: str = CURSOR,
        purge_account_statuses: frozenset[str] = PURGE_ACCOUNT_STATUSES,
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
        self._next_prune = 0.0  # the index is pruned at the first flush, then hourly
        self.file_writes: FileWrites = files if files is not None else InlineWrites(context.cache_root)
        self.flush_frames = flush_frames
        self.flush_seconds = flush_seconds
        self.durable = durable
        self.track_follows = track_follows
        self.on_flush = on_flush  # called before each durable commit (e.g. to flush a recording)
        self.population: Population = context.state.population.current(tracked_follows=track_follows)
        self._follows = context.state.population.tracked_follows() if track_follows else {}
        self._file_in_network = context.state.population.current().in_network
        self.cursor_source = cursor_source  # whose seqs: a replay's, or a relay host's
        self.cursor = context.state.cursors.get(cursor_source)  # the last seq committed as durable
        self.last_seq = self.cursor  # the last seq processed (written, maybe not yet durable)
        self.last_event_time: str | None = None
        self.last_frame_wall: float | None = None  # time.time() when the last frame arrived
        self.flush_observer: Callable[[float], None] | None = None  # given each flush's seconds
        self.frames: dict[str, int] = {}
        self.ops: dict[str, int] = {}
        self.files: dict[str, int] = {}
        self.rejections: dict[str, int] = {}
        self.skipped = 0
        self._pending_seq: int | None = None
        self._pending_frames = 0
        self._pending_index: dict[str, set[str]] = {}  # this batch's rows, not yet committed
        self._pending_follows: dict[str, tuple[str, str] | None] = {}
        # accounts whose status asks for a purge at the next export (DID -> (seq, reason)), or
        # whose reactivation cancels one (reason None); the last event of a batch decides
        self._account_purges: dict[str, tuple[int, PurgeReason | None]] = {}
        self.purge_account_statuses = purge_account_statuses
        self.accounts: dict[str, int] = {}
        self._resync: set[str] = set()  # study users whose #sync asks for a fresh backfill
        # DIDs being backfilled: their live commits wait here, and the cursor stays before the
        # first of them, so that a crash replays them (``hold``, ``release``)
        self.held: dict[str, list[Commit]] = {}
        self._held_from: dict[str, int] = {}
        self._held_bytes: dict[str, int] = {}
        self.held_since: dict[str, float] = {}  # monotonic
        self.hold_limits = HoldLimits()
        self.hold_overflows: dict[str, str] = {}  # DIDs released because their hold overflowed: why
        self.verifier: StreamVerifier | None = None  # with --verify
        self._population_version = -1  # the first flush records the version this writer applies
        self._recorded = set(context.state.written_by.names()[0])  # handlers the state knows wrote
        self._last_flush = time.monotonic()
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
        self.last_frame_wall = time.time()
        if seq is not None and self.last_seq is not None and seq <= self.last_seq:
            self.skipped += 1
            return None
        self.frames[decoded.kind] = self.frames.get(decoded.kind, 0) + 1
        for problem in decoded.problems:
            self._reject(problem, f"seq {seq}")
        given = decoded
        if self.verifier is not None and (decoded.commit is not None or decoded.event is not None):
            checked = self.verifier.check(decoded, self.population)
            if checked.resync is not None:
                self._resync.add(checked.resync)
            decoded = checked.decoded if checked.decoded is not None else Decoded(decoded.kind, seq)
            if checked.decoded is None:
                self._reject("unverified_commit", f"seq {seq}")
        held = self.held.get(decoded.commit.repo) if decoded.commit is not None else None
        if held is not None and decoded.commit is not None and seq is not None:
            held.append(decoded.commit)  # its backfill is running: applied once it is done
            self._held_from.setdefault(decoded.commit.repo, seq)
            self._hold_check(decoded.commit.repo, len(frame))
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
        """Hold ``did``'s live commits from now on (its backfill starts)."""
        self.held.setdefault(did, [])
        self.held_since.setdefault(did, time.monotonic())

    def _hold_check(self, did: str, size: int) -> None:
        """Past its hold's bounds, a DID's held commits are applied as live ones, in order, at
        once (its backfill is failed by its owner, who finds it in ``hold_overflows``)."""
        size = self._held_bytes[did] = self._held_bytes.get(did, 0) + size
        count, limits = len(self.held[did]), self.hold_limits
        if count > limits.commits or size > limits.bytes:
            reason = (
                f"its live commits held during the backfill passed the bound of {limits.commits:,} "
                f"commits or {limits.bytes:,} bytes ({count:,} commits, {size:,} bytes)"
            )
            self.hold_overflows[did] = reason
            self.release(did)

    def release(self, did: str) -> int:
        """Apply ``did``'s held commits, in order (its backfill is done, or failed); how many."""
        commits = self.held.pop(did, [])
        self._held_from.pop(did, None)
        self._held_bytes.pop(did, None)
        self.held_since.pop(did, None)
        for commit in commits:
            self.apply_commit(commit)
        return len(commits)

    def forget_held(self) -> int:
        """Drop every held commit unapplied (a stop that cannot write any more): the cursor
        never passed them, so the next start replays them. How many."""
        dropped = sum(len(commits) for commits in self.held.values())
        for did in list(self.held):
            self.held.pop(did)
            self._held_bytes.pop(did, None)
            self.held_since.pop(did, None)
        return dropped

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
            self._account_status(event, seq)
        if event.event == "sync" and group == "study":
            self._resync.add(event.did)  # its repository must be backfilled again
        return writes

    def _account_status(self, event: AccountEvent, seq: int) -> None:
        """Decide what a population account's ``#account`` event means for its data: a status
        that purges marks it for the next export's purge; a reactivation cancels that purge
        if it has not run yet; any other status keeps it. Each decision is logged and counted."""
        if event.active:
            decision, reason = "reactivated", None
        elif event.status is not None and event.status in self.purge_account_statuses:
            decision, reason = "marked_for_purge", PurgeReason.for_account(event.status)
        else:
            decision, reason = "kept_inactive", None
        self.accounts[decision] = self.accounts.get(decision, 0) + 1
        fields = {"did": event.did, "status": event.status, "decision": decision, "seq": seq}
        extra = {"event": "account_status", "fields": fields}
        if decision == "kept_inactive":
            log.info("account %s is %s: kept (not a purging status)", event.did, event.status, extra=extra)
            return
        self._account_purges[event.did] = (seq, reason)
        outcome = "purged at the next export" if reason else "a pending purge, if any, is cancelled"
        status = event.status or "active"
        log.info("account %s %s at seq %s: %s", event.did, status, seq, outcome, extra=extra)

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
                self._track(record.uri, record.author_did, record.subject_did)
        return writes

    def _track(self, uri: str, follower: str, subject: str | None) -> None:
        if subject is not None and subject in self.population.withdrawn:
            return  # a withdrawal sticks: a follow does not bring the account back
        if subject is not None:  # a follow
            self._follows[uri] = self._pending_follows[uri] = (follower, subject)
        elif uri in self._follows:  # its delete
            del self._follows[uri]
            self._pending_follows[uri] = None
        else:
            return
        followed = {s for _, s in self._follows.values()}
        self.population = self.population._replace(in_network=frozenset(self._file_in_network | followed))

    def reload_population(self) -> Population:
        """Re-read the population from the state store (after its user sets were replaced)."""
        stored = self.context.state.population.current()
        self._file_in_network = stored.in_network
        followed = {s for _, s in self._follows.values()}
        self.population = stored._replace(in_network=frozenset(self._file_in_network | followed))
        return self.population

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
        purged = self.context.state.population.purged()
        for follows in (self._follows, self._pending_follows):
            for uri, follow in list(follows.items()):
                if follow is not None and (follow[0] in purged or follow[1] in purged):
                    del follows[uri]
        self.reload_population()
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
        return self._pending_frames > 0 and time.monotonic() - self._last_flush >= self.flush_seconds

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
        ):
            return
        if self.on_flush is not None:
            self.on_flush()
        if self.durable:
            sync_filesystem(self.context.cache_root)
        failpoint("write.files_durable")
        cursor = self._pending_seq
        if cursor is not None and self._held_from:  # not past a commit still held
            cursor = min(cursor, min(self._held_from.values()) - 1)
        self.context.state.commit(
            cursor,
            ((uri, key) for uri, keys in self._pending_index.items() for key in keys),
            self._pending_follows,
            account_purges=self._account_purges,
            population_version=version,
            cursor_source=self.cursor_source,
            resync=self._resync,
            written=written,
        )
        self._recorded |= written
        self._account_purges.clear()
        self._resync.clear()
        failpoint("write.cursor_stored")
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + 3600
            self.context.state.index.prune(time.time() - self.index_retention)
        self._pending_index.clear()
        self._pending_follows.clear()
        if cursor is not None:
            self.cursor = cursor
        if cursor == self._pending_seq:  # else committed later, once nothing holds it back
            self._pending_seq = None
        self._pending_frames = 0
        self._last_flush = time.monotonic()
        if self.flush_observer is not None:
            self.flush_observer(time.perf_counter() - started)

    def summary(self) -> WriteSummary:
        return WriteSummary(
            frames=dict(self.frames),
            ops=dict(self.ops),
            files=dict(self.files),
            rejections=dict(self.rejections),
            skipped_below_cursor=self.skipped,
            cursor=self.cursor,
            accounts=dict(self.accounts),
            verification=dict(self.verifier.counts) if self.verifier is not None else {},
        )
