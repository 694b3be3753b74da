"""What syncstream's small HTTP servers share (the writer's /metrics, the loopback PDS): a
request handler that answers whole bodies and keeps no access log, and a server whose
connections are bounded in number and in idle time."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["BoundedHTTPServer", "QuietHandler"]


class QuietHandler(BaseHTTPRequestHandler):
    def answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # requests (scrapes, rehearsal fetches) are not news


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them (a connection beyond is
    closed at once), each connection's socket timed out after ``timeout`` seconds without a
    byte: idle or half-sent requests cannot pin threads and their stacks for ever."""

    daemon_threads = True
    request_queue_size = 64  # connections waiting for accept(): beyond, a client's SYN is retried

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_connections: int = 16,
        timeout: float = 10.0,
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self.request_timeout = timeout
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, client = super().get_request()
        connection.settimeout(self.request_timeout)
        return connection, client

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: no thread for it
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
