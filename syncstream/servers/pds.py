"""A loopback PDS and PLC directory, to rehearse a backfill: ``getRepo`` for each CAR, and a DID
document for each repository's DID that names this server as its PDS.

``python -m syncstream.servers.pds --repo FILE.car [--repo ...] [--port N] [--fault DID:KIND[:ARG]]...
[--key-seed N] [--documents FILE]``

Use its URL as both the PLC directory (``--plc-url``) and the PDS. Each generated DID document
publishes the signing key the repositories were signed with (``--key-seed``, as
``syncstream.servers.keys.SigningKey(N)``; by default the rehearsal key, ``REHEARSAL_SEED``, which
``benchmarks.repos`` signs with); ``--documents`` serves given DID documents as they are
(a JSON object DID -> document, zstd-compressed or not: the corpus's ``did_docs.json.zst``).
Faults, per DID:

- ``down``: the connection is closed without an answer (a PDS that is down);
- ``error[:STATUS]``: ``getRepo`` answers an XRPC error with STATUS (default 500);
- ``truncated``: ``getRepo`` sends half the CAR;
- ``slow[:SECONDS]``: ``getRepo`` waits SECONDS (default 0.2) first, standing in for latency;
- ``trickle[:SECONDS]``: ``getRepo`` sends one byte every SECONDS (default 0.5), never silent
  for long, never done in any useful time;
- ``ratelimit[:N]``: the first N (default 1) ``getRepo`` calls are answered 429 with
  ``RateLimit-*`` headers (reset in a second), as Bluesky's PDSes answer past 3,000 per 5 min;
- ``nohandle``: the DID document has no ``alsoKnownAs`` (no handle).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

from syncstream.backfill.repo import repo_did
from syncstream.cli import run
from syncstream.failpoints import set_process
from syncstream.httpd import QuietHandler
from syncstream.options import non_negative_int
from syncstream.servers.keys import REHEARSAL_SEED, SigningKey
from syncstream.signals import Stops

__all__ = ["LoopbackPds", "PdsFault", "main", "parse_pds_fault", "read_documents"]

_KINDS = ("down", "error", "truncated", "slow", "trickle", "ratelimit", "nohandle")


class PdsFault(NamedTuple):
    kind: str
    arg: float | None = None


def parse_pds_fault(text: str) -> tuple[str, PdsFault]:
    """``DID:KIND[:ARG]`` (a DID has colons: the kind is the last but one or the last part)."""
    parts = text.split(":")
    for index in (len(parts) - 1, len(parts) - 2):
        if index > 0 and parts[index] in _KINDS:
            did, kind, rest = ":".join(parts[:index]), parts[index], parts[index + 1 :]
            try:
                arg = float(rest[0]) if rest else None
            except ValueError:
                break
            return did, PdsFault(kind, arg)
    raise ValueError(f"bad fault {text!r}: expected DID:KIND[:ARG] with KIND in {list(_KINDS)}")


class LoopbackPds:
    def __init__(
        self,
        repos: Mapping[str, bytes],
        faults: Mapping[str, PdsFault] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        key: SigningKey | None = None,
        documents: Mapping[str, dict[str, object]] | None = None,
    ) -> None:
        self.repos, self.faults = dict(repos), dict(faults or {})
        self.key = key  # the key the repositories were signed with, published in the documents
        self.documents = dict(documents or {})  # served as they are
        self.requests: list[str] = []  # the DIDs getRepo was asked for, in order
        self._limited: dict[str, int] = {}  # ratelimit: 429s answered per DID
        pds = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/xrpc/com.atproto.sync.getRepo":
                    did = parse_qs(parts.query).get("did", [""])[0]
                    pds.requests.append(did)
                    self._repo(did)
                elif parts.path.lstrip("/") in pds.repos or parts.path.lstrip("/") in pds.documents:
                    self.answer(
                        200, json.dumps(pds.document(parts.path.lstrip("/"))).encode(), "application/json"
                    )
                else:
                    self._error(404, "NotFound", f"nothing at {parts.path}")

            def _repo(self, did: str) -> None:
                fault = pds.faults.get(did)
                car = pds.repos.get(did)
                if fault is not None and fault.kind == "down":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault is not None and fault.kind == "slow":
                    time.sleep(fault.arg if fault.arg is not None else 0.2)
                if fault is not None and fault.kind == "ratelimit":
                    limited = pds._limited[did] = pds._limited.get(did, 0) + 1
                    if limited <= int(fault.arg or 1):
                        self._rate_limited()
                        return
                if fault is not None and fault.kind == "trickle" and car is not None:
                    self._trickle(car, fault.arg if fault.arg is not None else 0.5)
                    return
                if fault is not None and fault.kind == "error":
                    self._error(int(fault.arg or 500), "InternalServerError", "injected by the loopback PDS")
                elif car is None:
                    self._error(400, "RepoNotFound", f"could not find repo for DID: {did}")
                else:
                    body = car[: len(car) // 2] if fault is not None and fault.kind == "truncated" else car
                    self.answer(200, body, "application/vnd.ipld.car")

            def _trickle(self, car: bytes, seconds: float) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.ipld.car")
                self.send_header("Content-Length", str(len(car)))
                self.end_headers()
                try:
                    for index in range(len(car)):
                        self.wfile.write(car[index : index + 1])
                        self.wfile.flush()
                        time.sleep(seconds)
                except OSError:  # the client gave up, as it should
                    self.close_connection = True

            def _rate_limited(self) -> None:
                body = json.dumps({"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}).encode()
                self.send_response(429)
                for name, value in (
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("RateLimit-Limit", "3000"),
                    ("RateLimit-Remaining", "0"),
                    ("RateLimit-Reset", str(int(time.time()) + 1)),
                    ("RateLimit-Policy", "3000;w=300"),
                ):
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, name: str, message: str) -> None:
                self.answer(
                    status, json.dumps({"error": name, "message": message}).encode(), "application/json"
                )

        self.http = ThreadingHTTPServer((host, port), Handler)
        self.http.daemon_threads = True
        self._thread = threading.Thread(target=self.http.serve_forever, name="loopback-pds", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.http.server_address[0], self.http.server_address[1]
        return f"http://{host!s}:{port}"

    def document(self, did: str) -> dict[str, object]:
        """A DID document in the PLC directory's shape, naming this server as the PDS and the
        rehearsal's key as the signing key (a key nothing signed with when there is none)."""
        given = self.documents.get(did)
        if given is not None:
            return given
        key = (
            self.key.multibase
            if self.key is not None
            else "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF"
        )
        document: dict[str, object] = {
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": did,
            "alsoKnownAs": [f"at://{did.rsplit(':', 1)[-1]}.test"],
            "verificationMethod": [
                {"id": f"{did}#atproto", "type": "Multikey", "controller": did, "publicKeyMultibase": key}
            ],
            "service": [
                {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": self.url}
            ],
        }
        fault = self.faults.get(did)
        if fault is not None and fault.kind == "nohandle":
            del document["alsoKnownAs"]
        return document

    def start(self) -> LoopbackPds:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def __enter__(self) -> LoopbackPds:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def read_documents(path: Path) -> dict[str, dict[str, object]]:
    """A JSON object DID -> DID document, zstd-compressed or not."""
    import zstandard  # noqa: PLC0415

    data = path.read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        data = zstandard.ZstdDecompressor().stream_reader(data).read()
    documents = json.loads(data)
    if not isinstance(documents, dict):
        raise ValueError("not a JSON object of DID -> document")
    return documents


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="syncstream pds",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Faults: " + ", ".join(_KINDS) + " (see the module's documentation).",
    )
    parser.add_argument("--repo", action="append", default=[], help="a getRepo CAR file (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=non_negative_int, default=0, help="port (default: a free one, printed at start)"
    )
    parser.add_argument(
        "--fault", action="append", default=[], metavar="DID:KIND[:ARG]", help="inject a fault"
    )
    parser.add_argument(
        "--key-seed",
        type=int,
        default=REHEARSAL_SEED,
        help="the repositories' signing key, SigningKey(N), published in the DID documents "
        "(default: %(default)s, the key benchmarks.repos and the rehearsal files sign with)",
    )
    parser.add_argument("--documents", metavar="FILE", help="DID documents to serve (JSON, or zstd JSON)")
    args = parser.parse_args(argv)
    repos: dict[str, bytes] = {}
    for path in args.repo:
        try:
            car = Path(path).read_bytes()
            repos[repo_did(car)] = car
        except (OSError, ValueError) as error:
            print(f"error: {path}: {error}", file=sys.stderr)
            return 2
    try:
        faults = dict(parse_pds_fault(text) for text in args.fault)
    except ValueError as error:
        parser.error(str(error))
    documents: dict[str, dict[str, object]] = {}
    if args.documents is not None:
        try:
            documents = read_documents(Path(args.documents))
        except (OSError, ValueError) as error:
            print(f"error: {args.documents}: {error}", file=sys.stderr)
            return 2
    key = SigningKey(args.key_seed)
    set_process("pds")
    with (
        Stops("closing and exiting") as stops,
        LoopbackPds(repos, faults, args.host, args.port, key=key, documents=documents) as pds,
    ):
        print(
            f"serving {len(repos)} repositories and {len(documents)} DID documents at {pds.url}", flush=True
        )
        stops.flag.wait()
    return 0


if __name__ == "__main__":
    run(main)
