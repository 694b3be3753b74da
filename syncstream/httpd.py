"""What syncstream's small HTTP servers share (the writer's /metrics, the loopback PDS): a
request handler that answers whole bodies and keeps no access log."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

__all__ = ["QuietHandler"]


class QuietHandler(BaseHTTPRequestHandler):
    def answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # requests (scrapes, rehearsal fetches) are not news
