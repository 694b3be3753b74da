"""The live firehose: the atproto SDK's client, a current cursor, reconnects, signals, progress.

The SDK's client owns the websocket (connect, receive timeout, reconnecting after a dropped
transport or a stalled socket). We take its raw frames (no SDK models: the same lean decoding
as a replay), give it our backoff, and keep its cursor parameter current before every dial, so
that any reconnect, its own or ours, resumes from the last processed seq. A clean close and an
error frame end the SDK's ``start``; our loop then reconnects, with the same backoff.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, BinaryIO

import msgspec
from atproto_firehose import FirehoseSubscribeReposClient

from syncstream.clock import SYSTEM_CLOCK, Clock
from syncstream.errors import CacheWriteError, HelperError, RelayError
from syncstream.firehose.decode import Decoded
from syncstream.firehose.replay import write_frame
from syncstream.signals import STOP_SIGNALS, StopFlag, Stops
from syncstream.write.options import PROGRESS_SECONDS, RECONNECT_DELAY, RECV_TIMEOUT
from syncstream.write.progress import Progress
from syncstream.write.writer import CacheWriter

__all__ = ["Backoff", "FirehoseSource", "LiveOptions", "LiveRunner", "relay_base_uri"]

log = logging.getLogger("syncstream.write")

FUTURE_CURSOR_LIMIT = 3  # FutureCursor answers in a row before the writer stops


def relay_base_uri(url: str) -> str:
    """``wss://host``, ``wss://host/xrpc`` or the full subscribeRepos URL -> ``wss://host/xrpc``."""
    url = url.rstrip("/")
    url = url.removesuffix("/com.atproto.sync.subscribeRepos")
    return url if url.endswith("/xrpc") else f"{url}/xrpc"


class Backoff:
    """Exponential backoff with jitter: base * 2^(n-1), capped, times a random 0.75..1.25."""

    def __init__(self, base: float, cap: float = 60.0) -> None:
        self.base, self.cap = base, cap
        self.attempt = 0

    def delay(self, attempt: int | None = None) -> float:
        n = self.attempt if attempt is None else attempt
        return min(self.base * 2.0 ** max(n - 1, 0), self.cap) * random.uniform(0.75, 1.25)

    def next(self) -> float:
        self.attempt += 1
        return self.delay()

    def reset(self) -> None:
        self.attempt = 0


class FirehoseSource(FirehoseSubscribeReposClient):  # type: ignore[misc]  # the SDK is untyped
    """The SDK's firehose client, handing over raw frames and dialling from a current cursor."""

    def __init__(
        self,
        base_uri: str,
        cursor: Callable[[], int | None],
        backoff: Backoff,
        recv_timeout: float,
        on_retry: Callable[[str, str, float], None] | None = None,
    ) -> None:
        super().__init__(params=None, base_uri=base_uri, recv_timeout=recv_timeout)
        self._cursor = cursor
        self._backoff = backoff
        self._on_retry = on_retry  # (reason, detail, delay): a reconnect the SDK makes by itself
        self._next_delay = 0.0
        self.dials = 0
        self.unparsed = 0  # frames the client could not hand over (text frames): counted, not lost silently

    def _before_connect(self) -> None:
        # The SDK reuses its initial parameters when it reconnects by itself: set them anew
        # before every dial, from the last frame the writer processed.
        cursor = self._cursor()
        self.update_params({} if cursor is None else {"cursor": cursor})
        self.dials += 1
        log.info("connecting to %s", self._websocket_uri)

    def _decode_frame(self, raw_frame: str | bytes) -> Any:
        if isinstance(raw_frame, bytes):
            return raw_frame
        self.unparsed += 1
        if self.unparsed == 1:
            log.warning("the relay sent a text frame, which no relay frame is: counted and passed over")
        return None

    def _handle_websocket_error_or_stop(self, exception: Exception) -> bool:
        stop: bool = super()._handle_websocket_error_or_stop(exception)
        if not stop and not self._stopped:
            # The SDK reconnects by itself after a dropped transport (a cut without a close
            # frame) or a receive timeout (a stall): say and count each one, as ours are.
            self._next_delay = self._backoff.delay(self._reconnect_no)
            reason = "stalled" if isinstance(exception, TimeoutError) else type(exception).__name__
            if self._on_retry is not None:
                detail = f"relay connection to {self._websocket_uri}: {type(exception).__name__}: {exception}"
                self._on_retry(reason, detail, self._next_delay)
        return stop

    def _handle_frame_decoding_error(self, exception: Exception) -> None:
        raise exception

    def _get_reconnection_delay(self) -> float:
        return self._next_delay


class LiveOptions(msgspec.Struct, frozen=True, kw_only=True):
    relay: str = "wss://bsky.network"
    recv_timeout: float = RECV_TIMEOUT
    idle_exit: float | None = None  # exit 0 once no frame has arrived for this long
    reconnect_delay: float = RECONNECT_DELAY
    progress_seconds: float = PROGRESS_SECONDS


class LiveRunner:
    """Runs the SDK client in a worker thread; the main thread handles signals, idle exit,
    timed flushes and progress. One lock serialises everything that touches the writer.

    Each frame is appended to ``record`` (``--record``) before the writer has it;
    ``reload_users`` re-reads the user files on SIGHUP; ``tick`` is called in the main thread,
    with the writer's lock, every loop (the background backfill's ``poll``); ``extra_progress``
    adds fields to the progress line. The runner owns no resource outside ``run``. Given the
    command's ``stops`` (caught since its start, before the state was opened), the runner reads
    them; without, ``run`` catches the stop signals itself."""

    def __init__(
        self,
        writer: CacheWriter,
        options: LiveOptions,
        *,
        record: BinaryIO | None = None,
        reload_users: Callable[[], None] | None = None,
        tick: Callable[[], None] | None = None,
        extra_progress: Callable[[], dict[str, object]] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        stops: Stops | None = None,
    ) -> None:
        self.writer = writer
        self.options = options
        self.record = record
        self.reload_users = reload_users
        self.tick = tick
        self.extra_progress = extra_progress
        self._clock = clock
        self.lock = threading.Lock()
        self._stops = stops
        self.stopping = StopFlag() if stops is None else stops.flag  # also set by the signal handler
        self.reloads_asked = 0  # SIGHUPs received: a counter, as a handler may take no lock
        self._reloads_done = 0
        self.backoff = Backoff(options.reconnect_delay)
        self.client: FirehoseSource | None = None
        self.connections = 0
        self.last_frame_at = clock.monotonic()
        self.received = 0
        self._outdated_since: int | None = None
        self._frames_on_connection = 0
        self._error: BaseException | None = None
        self.idle_exited = False
        self.unparsed = 0
        self.future_cursors = 0  # FutureCursor answers in a row: three end the run
        self._error_frame: str | None = None  # the error frame that ended the connection
        self.reconnects: dict[str, int] = {}  # reason -> count
        self.last_frame_wall: float | None = None  # Unix time of the last frame (metrics, health)

    # the worker -----------------------------------------------------------------------------

    def _consume(self) -> None:
        base_uri = relay_base_uri(self.options.relay)
        try:
            while not self.stopping.is_set():
                client = FirehoseSource(
                    base_uri, self._cursor, self.backoff, self.options.recv_timeout, self._reconnecting
                )
                self.client = client
                self._frames_on_connection = 0
                try:
                    client.start(self._on_frame)
                    ended = "the relay closed the connection"
                except Exception as error:  # the SDK wraps what it does not retry itself
                    ended = f"{type(error).__name__}: {error}"
                self.connections += client.dials
                self.unparsed += client.unparsed
                if self.stopping.is_set():
                    return
                if self._frames_on_connection:
                    self.backoff.reset()
                reason = "closed" if ended.startswith("the relay closed") else ended.split(":", 1)[0]
                if self._error_frame is not None:  # the relay's error frame closed it
                    reason, self._error_frame = f"error:{self._error_frame}", None
                delay = self.backoff.next()
                self._reconnecting(reason, ended, delay)
                self.stopping.wait(delay)
        except BaseException as error:  # a bug or a full disk: stop, and let main report it
            self._error = error
            self.stopping.set()

    def reconnect_counts(self) -> dict[str, int]:
        """The reconnects so far, by reason: a copy, for another thread (the metrics)."""
        return dict(self.reconnects)

    def _cursor(self) -> int | None:
        return self.writer.last_seq

    def _reconnecting(self, reason: str, detail: str, delay: float) -> None:
        """Count a reconnect by its reason (``syncstream_reconnects_total``) and log it."""
        self.reconnects[reason] = self.reconnects.get(reason, 0) + 1
        log.warning(
            "%s; reconnecting from seq %s in %.2fs", detail, self._cursor(), delay,
            extra={"event": "reconnect", "fields": {"reason": reason, "detail": detail,
                                                    "seq": self._cursor(), "delay_seconds": round(delay, 3)}},
        )  # fmt: skip

    def _on_frame(self, frame: bytes) -> None:
        with self.lock:
            self.received += 1
            if self.record is not None:
                write_frame(self.record, frame)
            try:
                decoded = self.writer.process_frame(frame)
            except (CacheWriteError, HelperError) as error:  # fatal: reconnecting cannot fix it
                self._error = error
                self.stop()
                raise
            if decoded is None or decoded.kind != "error":
                # An error frame is no sign of a healthy stream: it neither resets the backoff
                # nor keeps --idle-exit from firing (a relay answering FutureCursor forever).
                self.last_frame_at = self._clock.monotonic()
                self.last_frame_wall = self._clock.time()
                self._frames_on_connection += 1
                self.future_cursors = 0
        if decoded is not None:
            self._observe(decoded)

    def _observe(self, decoded: Decoded) -> None:
        if decoded.kind == "error":
            if decoded.name == "FutureCursor":
                self.future_cursors += 1
                if self.future_cursors >= FUTURE_CURSOR_LIMIT:
                    self._error = RelayError(
                        f"the relay {self.options.relay} answered FutureCursor {self.future_cursors} times "
                        f"in a row to cursor {self._cursor()}: it has no event after that seq (another "
                        "relay's cursor, or a relay reset). Start from the relay's present with --live, "
                        "or from a seq it holds with --cursor N"
                    )
                    self.stop()
                    return
            log.warning("relay error frame %s; reconnecting from seq %s", decoded.name, self._cursor())
            self._error_frame = decoded.name
            if self.client is not None:
                self.client.stop()
        elif decoded.kind == "info" and decoded.name == "OutdatedCursor":
            self._outdated_since = self._cursor()
            log.warning(
                "relay says the cursor %s is outdated: it no longer holds what follows it",
                self._outdated_since,
            )
        elif decoded.kind == "info":
            log.info("relay info frame %s", decoded.name)
        elif self._outdated_since is not None and decoded.seq is not None:
            gap = decoded.seq - self._outdated_since - 1
            if gap > 0:
                log.warning(
                    "the stream resumed at seq %d after cursor %d: %d events (seq %d..%d) are lost",
                    decoded.seq, self._outdated_since, gap, self._outdated_since + 1, decoded.seq - 1,
                )  # fmt: skip
            else:
                log.info("the stream resumed right after cursor %d: no events lost", self._outdated_since)
            self._outdated_since = None

    # the main thread ------------------------------------------------------------------------

    def run(self) -> None:
        previous = {}
        if self._stops is None:
            previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        worker = threading.Thread(target=self._consume, name="firehose", daemon=True)
        worker.start()
        progress = Progress(
            self.writer, self.options.progress_seconds, extra=self.extra_progress, clock=self._clock
        )
        try:
            while worker.is_alive():
                worker.join(timeout=0.1)
                if self.stopping.is_set():
                    # A stop signal's handler sets the flag alone; the client, which may have
                    # connected since, is told here (stopping it again costs nothing).
                    self.stop()
                now = self._clock.monotonic()
                asked = self.reloads_asked if self._stops is None else self._stops.hangups
                if asked != self._reloads_done:
                    self._reloads_done = asked
                    self._reload()
                idle = self.options.idle_exit
                if idle is not None and now - self.last_frame_at >= idle and not self.stopping.is_set():
                    log.info("no frame for %.1fs: exiting", now - self.last_frame_at)
                    self.idle_exited = True
                    self.stop()
                with self.lock:
                    if self.tick is not None:
                        self.tick()
                    if self.writer.flush_due():
                        self.writer.flush()
                progress.tick()
        finally:
            self.stop()
            worker.join(timeout=max(self.options.recv_timeout, 5.0))
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            with self.lock:
                self.writer.flush()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self.stopping.set()
        client = self.client
        if client is not None:
            client.stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reloads_asked += 1
            return
        log.info("%s: flushing and exiting", signal.Signals(signum).name)
        self.stop()

    def _reload(self) -> None:
        if self.reload_users is None:
            return
        try:
            with self.lock:
                self.reload_users()
                population = self.writer.reload_population()
        except Exception as error:  # a bad file on SIGHUP must not stop the stream
            log.error("SIGHUP: user files not reloaded: %s", error)
            return
        log.info(
            "SIGHUP: %d study users, %d in-network users", len(population.study), len(population.in_network)
        )
