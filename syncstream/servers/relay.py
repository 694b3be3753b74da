"""A loopback relay: serves a replay file at ``/xrpc/com.atproto.sync.subscribeRepos``.

``python -m syncstream.servers.relay --replay FILE [--host 127.0.0.1] [--port N] [--fault KIND:N[:NAME]]...``

It keeps the relay's cursor semantics: a connection with ``?cursor=S`` gets every frame after
``S`` (``--inclusive`` also resends the frame at ``S``, as some relays do), a cursor older than
the replay gets ``#info OutdatedCursor`` first, a cursor beyond it gets a ``FutureCursor`` error
frame; then the connection is held open. Faults rehearse what real relays and networks do; each
``--fault`` applies to one connection, in order, after N frames on it:

- ``cut:N`` drops the transport without a close frame;
- ``close:N`` closes cleanly (code 1000);
- ``error:N:NAME`` sends an error frame (``ConsumerTooSlow``, ``FutureCursor``...) and closes;
- ``info:N:NAME`` sends an ``#info`` frame and carries on;
- ``stall:N`` stops sending but keeps the connection open.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import libipld
import zstandard
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from syncstream.cli import run, setup_logging
from syncstream.failpoints import set_process
from syncstream.firehose.encode import error_frame, info_frame
from syncstream.firehose.replay import iter_replay
from syncstream.options import non_negative_int, positive_float
from syncstream.signals import StopRequest, Stops

__all__ = ["PATH", "Fault", "LoopbackRelay", "ReplayRelay", "main", "parse_fault"]

PATH = "/xrpc/com.atproto.sync.subscribeRepos"
_KINDS = {"cut", "close", "error", "info", "stall"}

log = logging.getLogger("syncstream.relay")


class Fault(NamedTuple):
    kind: str
    after: int  # frames sent on the connection before the fault
    name: str | None = None


def parse_fault(text: str) -> Fault:
    parts = text.split(":")
    if len(parts) < 2 or parts[0] not in _KINDS or not parts[1].isdigit():
        raise ValueError(f"bad fault {text!r}: expected KIND:N[:NAME] with KIND in {sorted(_KINDS)}")
    kind, after = parts[0], int(parts[1])
    name = ":".join(parts[2:]) or None
    if kind in ("error", "info") and name is None:
        raise ValueError(f"bad fault {text!r}: {kind} needs a name, e.g. {kind}:{after}:ConsumerTooSlow")
    return Fault(kind, after, name)


def _seq_of(frame: bytes) -> int | None:
    try:
        parts = libipld.decode_dag_cbor_multi(frame)
    except ValueError:
        return None
    body = parts[1] if len(parts) == 2 and isinstance(parts[1], dict) else {}
    seq = body.get("seq")
    return seq if isinstance(seq, int) else None


class ReplayRelay:
    """The relay's behaviour, independent of how it is run (CLI or a test's thread)."""

    def __init__(
        self,
        frames: Iterable[bytes],
        faults: Iterable[Fault] = (),
        *,
        inclusive: bool = False,
        rate: float | None = None,
    ) -> None:
        self.frames = [(_seq_of(frame), frame) for frame in frames]
        seqs = [seq for seq, _ in self.frames if seq is not None]
        self.first_seq = min(seqs) if seqs else None
        self.last_seq = max(seqs) if seqs else None
        self.faults = list(faults)
        self.inclusive = inclusive
        self.rate = rate  # frames per second, like a live relay; None: as fast as possible
        self.connections: list[int | None] = []  # the cursor each connection asked for

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != PATH:
            return connection.respond(404, f"only {PATH} is served here\n")
        return None

    async def handle(self, connection: ServerConnection) -> None:
        """Serve one connection; a client that leaves is one log line (the frames it was sent)."""
        sent = [0]
        try:
            await self._serve(connection, sent)
        except ConnectionClosed as closed:
            log.info("a client left after %d frames (%s)", sent[0], closed,
                     extra={"event": "client_left", "fields": {"frames": sent[0]}})  # fmt: skip

    async def _serve(self, connection: ServerConnection, sent: list[int]) -> None:
        query = parse_qs(urlsplit(connection.request.path if connection.request else "").query)
        cursor = int(query["cursor"][0]) if query.get("cursor", [""])[0].lstrip("-").isdigit() else None
        self.connections.append(cursor)
        fault = self.faults.pop(0) if self.faults else None
        if cursor is not None and self.last_seq is not None and cursor > self.last_seq:
            await connection.send(error_frame("FutureCursor", "Cursor in the future."))
            await connection.close()
            return
        if cursor is not None and self.first_seq is not None and cursor < self.first_seq - 1:
            await connection.send(
                info_frame("OutdatedCursor", "Requested cursor exceeded limit. Possibly missing events")
            )
        started = asyncio.get_running_loop().time()
        for seq, frame in self.frames:
            if (
                cursor is not None
                and seq is not None
                and (seq < cursor or (seq == cursor and not self.inclusive))
            ):
                continue
            if fault is not None and sent[0] == fault.after and await self._fault(connection, fault):
                return
            if self.rate is not None:
                # each frame at its time, evenly: a burst then a pause looks like a stall
                ahead = started + sent[0] / self.rate - asyncio.get_running_loop().time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await connection.send(frame)
            sent[0] += 1
        if fault is not None and sent[0] <= fault.after and await self._fault(connection, fault):
            return
        await connection.wait_closed()  # hold the connection open, as a live relay does

    async def _fault(self, connection: ServerConnection, fault: Fault) -> bool:
        """Apply the fault; True when the connection is over."""
        if fault.kind == "info":
            await connection.send(info_frame(fault.name or "", "injected by the loopback relay"))
            return False
        if fault.kind == "cut":
            connection.transport.abort()
        elif fault.kind == "close":
            await connection.close(1000)
        elif fault.kind == "error":
            await connection.send(error_frame(fault.name or "", "injected by the loopback relay"))
            await connection.close()
        elif fault.kind == "stall":
            await connection.wait_closed()
        return True


class LoopbackRelay:
    """A ``ReplayRelay`` served from a background thread on 127.0.0.1 (for tests and rehearsals)."""

    def __init__(self, relay: ReplayRelay, host: str = "127.0.0.1", port: int = 0) -> None:
        self.relay = relay
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="loopback-relay", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def start(self) -> LoopbackRelay:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self) -> Server:
        return await serve(
            self.relay.handle, self.host, self.port, process_request=self.relay.process_request, max_size=None
        )

    def stop(self) -> None:
        if self._server is not None:
            server = self._server

            async def shutdown() -> None:
                server.close()
                await server.wait_closed()

            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
            self._server = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> LoopbackRelay:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncstream relay",
        description="Serve a replay file as a relay's com.atproto.sync.subscribeRepos, with cursor "
        "semantics and injectable faults, to rehearse a pipeline against.",
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--replay", required=True, help="replay file ([u32 LE length][frame]..., zstd or not)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=non_negative_int, default=0, help="port (default: a free one, printed at start)"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND:N[:NAME]",
        help="a fault for the next connection",
    )
    parser.add_argument("--inclusive", action="store_true", help="also resend the frame at the cursor")
    parser.add_argument(
        "--rate",
        type=positive_float,
        metavar="FRAMES_PER_SECOND",
        help="pace the stream like a live relay (default: flat out)",
    )
    return parser


async def _run(relay: ReplayRelay, host: str, port: int, stop: StopRequest) -> None:
    async with serve(
        relay.handle, host, port, process_request=relay.process_request, max_size=None
    ) as server:
        bound = server.sockets[0].getsockname()
        print(f"serving {len(relay.frames)} frames at ws://{bound[0]}:{bound[1]}{PATH}", flush=True)
        # The stop signals' handler runs between the loop's waits (a wait it interrupts is
        # resumed): the flag is read a few times a second.
        while not stop.is_set():
            await asyncio.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging(quiet=False)
    logging.getLogger("websockets").setLevel(logging.WARNING)  # a line per connection otherwise
    set_process("relay")
    with Stops("closing the connections and exiting") as stops:
        return _main(parser, args, stops.flag)


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace, stop: StopRequest) -> int:
    try:
        faults = [parse_fault(text) for text in args.fault]
    except ValueError as error:
        parser.error(str(error))
    if not Path(args.replay).is_file():
        print(f"error: replay file not found: {args.replay}", file=sys.stderr)
        return 2
    try:
        relay = ReplayRelay(iter_replay(args.replay), faults, inclusive=args.inclusive, rate=args.rate)
    except (OSError, ValueError, zstandard.ZstdError) as error:
        print(f"error: cannot read {args.replay}: {error}", file=sys.stderr)
        return 2
    asyncio.run(_run(relay, args.host, args.port, stop))
    return 0


if __name__ == "__main__":
    run(main)
