"""A loopback PDS and PLC directory, to rehearse a backfill: ``getRepo`` for each CAR, and a DID
document for each repository's DID that names this server as its PDS.

``python -m syncstream.pds --repo FILE.car [--repo ...] [--port N] [--fault DID:KIND[:ARG]]...``

Use its URL as both the PLC directory (``--plc-url``) and the PDS. Faults, per DID:

- ``down``: the connection is closed without an answer (a PDS that is down);
- ``error[:STATUS]``: ``getRepo`` answers an XRPC error with STATUS (default 500);
- ``truncated``: ``getRepo`` sends half the CAR;
- ``slow[:SECONDS]``: ``getRepo`` waits SECONDS (default 0.2) first, standing in for latency.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

from syncstream.backfill.repo import read_repo
from syncstream.httpd import QuietHandler

__all__ = ["LoopbackPds", "PdsFault", "main", "parse_pds_fault"]

_KINDS = ("down", "error", "truncated", "slow")


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
    ) -> None:
        self.repos, self.faults = dict(repos), dict(faults or {})
        self.requests: list[str] = []  # the DIDs getRepo was asked for, in order
        pds = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/xrpc/com.atproto.sync.getRepo":
                    did = parse_qs(parts.query).get("did", [""])[0]
                    pds.requests.append(did)
                    self._repo(did)
                elif parts.path.lstrip("/") in pds.repos:
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
                if fault is not None and fault.kind == "error":
                    self._error(int(fault.arg or 500), "InternalServerError", "injected by the loopback PDS")
                elif car is None:
                    self._error(400, "RepoNotFound", f"could not find repo for DID: {did}")
                else:
                    body = car[: len(car) // 2] if fault is not None and fault.kind == "truncated" else car
                    self.answer(200, body, "application/vnd.ipld.car")

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
        """A DID document in the PLC directory's shape, naming this server as the PDS."""
        return {
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": did,
            "alsoKnownAs": [f"at://{did.rsplit(':', 1)[-1]}.test"],
            "verificationMethod": [  # a well-formed key: nothing here is signed or checked
                {
                    "id": f"{did}#atproto",
                    "type": "Multikey",
                    "controller": did,
                    "publicKeyMultibase": "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF",
                }
            ],
            "service": [
                {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": self.url}
            ],
        }

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m syncstream.pds",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Faults: " + ", ".join(_KINDS) + " (see the module's documentation).",
    )
    parser.add_argument("--repo", action="append", required=True, help="a getRepo CAR file (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one, printed at start)")
    parser.add_argument(
        "--fault", action="append", default=[], metavar="DID:KIND[:ARG]", help="inject a fault"
    )
    args = parser.parse_args(argv)
    repos: dict[str, bytes] = {}
    for path in args.repo:
        try:
            car = Path(path).read_bytes()
            repos[read_repo(car).did] = car
        except (OSError, ValueError) as error:
            print(f"error: {path}: {error}", file=sys.stderr)
            return 2
    try:
        faults = dict(parse_pds_fault(text) for text in args.fault)
    except ValueError as error:
        parser.error(str(error))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with LoopbackPds(repos, faults, args.host, args.port) as pds:
        print(f"serving {len(repos)} repositories (and their DID documents) at {pds.url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
