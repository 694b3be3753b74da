"""The writer's Prometheus metrics and health, served over HTTP (``--metrics HOST:PORT``).

``/metrics`` is Prometheus text from the writer's own counters, read at scrape time (a registry
per writer, no global state); ``/healthz`` answers 200 while a frame arrived within
``max_age`` seconds and the cache can take files, else 503 with the reason.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Self

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from syncstream.clock import SYSTEM_CLOCK, Clock
from syncstream.httpd import BoundedHTTPServer, QuietHandler
from syncstream.write.writer import CacheWriter

__all__ = ["MetricsServer", "WriterCollector", "flush_histogram", "parse_address"]

log = logging.getLogger("syncstream.write")


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); ``ValueError`` otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def flush_histogram() -> Histogram:
    """``syncstream_flush_seconds``, not yet registered: made before the writer, which is given
    its ``observe`` as a flush observer, and served by the ``MetricsServer`` given it."""
    return Histogram(
        "syncstream_flush_seconds",
        "Seconds per durable flush (files synced, cursor committed)",
        registry=None,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )


class WriterCollector(Collector):
    """The writer's counters as metric families, read when scraped."""

    def __init__(
        self,
        writer: CacheWriter,
        reconnects: Callable[[], dict[str, int]],
        backfills: Callable[[], dict[str, int]] = dict,
        pds: Callable[[], dict[str, float]] = dict,
    ) -> None:
        self.writer, self.reconnects, self.backfills = writer, reconnects, backfills
        self.pds = pds  # the backfill's waits for PDS hosts and their 429s

    def collect(self) -> Iterator[Metric]:
        writer = self.writer
        # Copying a plain dict is one step under the GIL: no lock against the frames' thread.
        frames, ops, files = dict(writer.frames), dict(writer.ops), dict(writer.files)
        rejections, reconnects = dict(writer.rejections), self.reconnects()
        verification = dict(writer.verifier.counts) if writer.verifier is not None else {}
        cursor, last_frame, lag = writer.cursor, writer.last_frame_wall, writer.event_lag()
        for name, doc, label, values in (
            ("syncstream_frames", "Relay frames received, by kind", "kind", frames),
            ("syncstream_ops", "Repo ops received, by action", "action", ops),
            ("syncstream_files_written", "Cache files written, by handler", "handler", files),
            ("syncstream_rejections", "Frames, ops and records passed over, by reason", "reason", rejections),
            ("syncstream_reconnects", "Reconnects to the relay, by reason", "reason", reconnects),
            ("syncstream_verifications", "Commits checked against their author's key, by outcome",
             "outcome", verification),
        ):  # fmt: skip
            family = CounterMetricFamily(name, doc, labels=[label])
            for value, count in sorted(values.items()):
                family.add_metric([value], count)
            yield family
        backfills = GaugeMetricFamily(
            "syncstream_backfills", "Backfills of this run, by status", labels=["status"]
        )
        for status, count in sorted(self.backfills().items()):
            backfills.add_metric([status], count)
        yield backfills
        pds = self.pds()
        for name, doc, key in (
            ("syncstream_backfill_pds_waits", "getRepo calls that waited for their PDS host", "waits"),
            ("syncstream_backfill_pds_wait_seconds", "Seconds getRepo calls waited for their PDS host",
             "wait_seconds"),
            ("syncstream_backfill_pds_rate_limited", "429 answers from PDS hosts", "rate_limited"),
        ):  # fmt: skip
            yield CounterMetricFamily(name, doc, value=pds.get(key, 0))
        yield GaugeMetricFamily("syncstream_cursor", "The last seq whose files are durable", cursor or 0)
        yield GaugeMetricFamily(
            "syncstream_last_frame_timestamp_seconds",
            "When the last frame arrived (Unix time)",
            last_frame or 0,
        )
        yield GaugeMetricFamily(
            "syncstream_event_lag_seconds", "Receipt time minus the last commit's time", lag or 0
        )


class MetricsServer:
    """``/metrics`` and ``/healthz`` on a thread of their own, for one writer, served while
    the server is entered (``with``); the socket is bound at construction.

    ``flushes`` is the writer's flush histogram (``flush_histogram``), ``reconnects`` the live
    runner's counts, ``backfills`` and ``pds`` the background backfill's (done, failed,
    running; PDS waits and 429s): each read at scrape time."""

    def __init__(
        self,
        writer: CacheWriter,
        address: tuple[str, int],
        *,
        max_age: float = 60.0,
        request_timeout: float = 10.0,
        max_connections: int = 16,
        flushes: Histogram | None = None,
        reconnects: Callable[[], dict[str, int]] = dict,
        backfills: Callable[[], dict[str, int]] = dict,
        pds: Callable[[], dict[str, float]] = dict,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.writer, self.max_age = writer, max_age
        self._clock = clock
        self.started = clock.time()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(WriterCollector(writer, reconnects, backfills, pds))
        if flushes is not None:
            self.registry.register(flushes)
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/metrics":
                    self.answer(200, generate_latest(server.registry), "text/plain; version=0.0.4")
                elif self.path.split("?", 1)[0] == "/healthz":
                    problem = server.problem()
                    self.answer(503 if problem else 200, (problem or "ok").encode() + b"\n", "text/plain")
                else:
                    self.answer(404, b"not found: try /metrics or /healthz\n", "text/plain")

        # A scraper or two at a time: idle or half-sent requests time out, and no more than
        # max_connections hold a thread (200 of them used to pin 200 threads, 2 GiB of stacks).
        self.http = BoundedHTTPServer(
            address, Handler, max_connections=max_connections, timeout=request_timeout
        )
        self.address = self.http.server_address
        self.thread = threading.Thread(target=self.http.serve_forever, name="metrics", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        host, port = self.address[0], self.address[1]
        log.info("metrics at http://%s:%s/metrics, health at /healthz", host, port,
                 extra={"event": "metrics_serving", "fields": {"host": host, "port": port}})  # fmt: skip
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def problem(self) -> str | None:
        """Why the writer is not healthy, or None."""
        last = self.writer.last_frame_wall or self.started
        age = self._clock.time() - last
        if age > self.max_age:
            return f"no frame for {age:.0f}s (more than {self.max_age:.0f}s)"
        root = self.writer.context.cache_root
        if not os.access(root, os.W_OK):
            return f"the cache {root} is not writable"
        if os.statvfs(root).f_bavail == 0:
            return f"the cache {root} has no space left"
        return None

    def close(self) -> None:
        """Stop serving (if it was) and release the socket."""
        if self.thread.is_alive():
            self.http.shutdown()
        self.http.server_close()
