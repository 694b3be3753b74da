"""Fetching a repository: resolve the DID, check its PDS endpoint, ``getRepo`` streamed to disk.

Nothing a PDS does keeps a fetch for long: the whole transfer has a deadline, a transfer that
keeps trickling bytes is cut once its mean rate falls under a minimum (after a grace period),
silence is cut by the read timeout, and the size is bounded. A stop abandons the transfer at
its next chunk. Each failure says what timed out or was refused, where, and after how long.

A DID document's PDS endpoint is used only when it is ``https`` on a public host (a global IP
address, port 443), unless the operator allows any (``endpoints="any"``, which rehearsals on a
loopback PLC directory get by default): a DID document is the account's to write, and must
not point the backfill at the collector's own network.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx

from syncstream.backfill.polite import HostGate, Waited
from syncstream.clock import SYSTEM_CLOCK, Clock
from syncstream.errors import FetchError, KeyUnavailable
from syncstream.options import FETCH_GRACE, FetchOptions
from syncstream.signals import StopFlag, StopRequest
from syncstream.verify import DidDocuments

__all__ = ["FetchLimits", "Fetched", "Fetcher", "endpoint_problem", "is_loopback_url"]

_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".localdomain")


_DEFAULTS = FetchOptions()


class FetchLimits(NamedTuple):
    deadline: float = _DEFAULTS.fetch_deadline  # seconds for a whole getRepo, host waits included
    min_rate: float = _DEFAULTS.fetch_min_rate  # bytes/s, the transfer's mean, checked after ``grace``
    grace: float = FETCH_GRACE
    timeout: float = _DEFAULTS.fetch_timeout  # connecting, and silence between two chunks
    max_bytes: int = 8 << 30


DEFAULT_LIMITS = FetchLimits()


class Fetched(NamedTuple):
    pds: str
    key: str  # the signing key of the DID document the PDS was taken from
    bytes: int
    seconds: float


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _global(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        return False


def endpoint_problem(url: str, *, resolve: bool = True) -> str | None:
    """Why ``url`` is no PDS endpoint to fetch from (https on a public host), or None."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme != "https":
        return f"the PDS endpoint {url!r} is not https"
    if not host or parts.username or parts.password:
        return f"the PDS endpoint {url!r} has no plain host"
    try:
        port = parts.port
    except ValueError:
        return f"the PDS endpoint {url!r} has a bad port"
    if port not in (None, 443):
        return f"the PDS endpoint {url!r} is not on port 443"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        return None if literal.is_global else f"the PDS endpoint {url!r} is not a public address"
    if host == "localhost" or host.endswith(_PRIVATE_SUFFIXES) or "." not in host:
        return f"the PDS endpoint {url!r} is not a public host name"
    if resolve:
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)}
        except OSError:
            return None  # the fetch fails with its own reason
        private = sorted(a for a in addresses if not _global(str(a)))
        if private:
            return f"the PDS endpoint {url!r} resolves to a non-public address ({private[0]})"
    return None


class Fetcher:
    """Resolves DIDs and fetches their repositories; thread-safe (one per run)."""

    def __init__(
        self,
        documents: DidDocuments,
        *,
        limits: FetchLimits = DEFAULT_LIMITS,
        gate: HostGate | None = None,
        endpoints: str = "public",  # or "any"
        stop: StopRequest | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.documents = documents
        self.limits = limits
        self.clock = clock
        self.gate = gate if gate is not None else HostGate(clock=clock)
        self.endpoints = endpoints
        self.stop: StopRequest = stop if stop is not None else StopFlag()
        self._http = httpx.Client(
            timeout=httpx.Timeout(limits.timeout),
            follow_redirects=False,
            headers={"User-Agent": "syncstream"},
        )

    def close(self) -> None:
        self._http.close()

    def resolve(self, did: str, *, refresh: bool = False) -> tuple[str, str]:
        """``did``'s PDS endpoint and signing key, from its DID document (a handle is not needed)."""
        started = self.clock.monotonic()
        try:
            document = self.documents.document(did, refresh=refresh)
            key = self.documents.key(did)
        except KeyUnavailable as error:
            raise FetchError(f"{error} (after {self.clock.monotonic() - started:.1f}s)") from None
        pds = document.get_pds_endpoint()
        if not pds:
            raise FetchError(f"the DID document of {did} names no PDS (#atproto_pds)")
        if self.endpoints != "any":
            problem = endpoint_problem(pds)
            if problem is not None:
                raise FetchError(f"{problem} (DID document of {did}; allow it with --pds-endpoints any)")
        return pds.rstrip("/"), key

    def fetch(self, did: str, destination: Path) -> Fetched:
        """Fetch ``did``'s repository into ``destination``."""
        started = self.clock.monotonic()
        deadline = started + self.limits.deadline
        pds, key = self.resolve(did)
        host = urlsplit(pds).netloc
        while True:
            try:
                self.gate.acquire(host, deadline, self.stop)
            except Waited as error:
                raise FetchError(f"getRepo of {did} at {host}: {error}") from None
            try:
                done = self._transfer(did, pds, host, destination, started=started, deadline=deadline)
            finally:
                self.gate.release(host)
            if done is not None:
                return Fetched(pds, key, done, self.clock.monotonic() - started)

    def _transfer(
        self, did: str, pds: str, host: str, destination: Path, *, started: float, deadline: float
    ) -> int | None:
        """The bytes written, or None when the host said to come back later (429)."""
        limits = self.limits
        url = f"{pds}/xrpc/com.atproto.sync.getRepo"
        where = f"getRepo of {did} at {host}"
        received = 0
        try:
            with (
                self._http.stream("GET", url, params={"did": did}) as response,
                open(destination, "wb") as out,
            ):
                pause = self.gate.answered(host, response.status_code, response.headers)
                if response.status_code == 429:
                    if self.clock.monotonic() + pause >= deadline:
                        raise FetchError(
                            f"{where}: rate limited (429), retry in {pause:.0f}s, past the deadline"
                        )
                    return None
                if response.status_code != 200:
                    response.read()
                    raise FetchError(f"{where} answered {response.status_code}: {_xrpc_error(response)}")
                length = response.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > limits.max_bytes:
                    raise FetchError(
                        f"{where}: the repository is {int(length):,} bytes, over {limits.max_bytes:,}"
                    )
                for chunk in response.iter_bytes():  # as it arrives: a trickle is seen byte by byte
                    out.write(chunk)
                    received += len(chunk)
                    elapsed = self.clock.monotonic() - started
                    if self.stop.is_set():
                        raise FetchError(
                            f"{where}: abandoned (stopping) after {received:,} bytes in {elapsed:.1f}s"
                        )
                    if received > limits.max_bytes:
                        raise FetchError(f"{where}: more than {limits.max_bytes:,} bytes")
                    if self.clock.monotonic() > deadline:
                        raise FetchError(
                            f"{where}: deadline of {limits.deadline:g}s passed with {received:,} bytes"
                        )
                    if elapsed > limits.grace and received / elapsed < limits.min_rate:
                        raise FetchError(
                            f"{where}: too slow, {received:,} bytes in {elapsed:.1f}s "
                            f"({received / elapsed:,.0f} bytes/s, under the minimum {limits.min_rate:,.0f})"
                        )
        except httpx.TimeoutException as error:
            elapsed = self.clock.monotonic() - started
            what = {
                httpx.ConnectTimeout: "connecting",
                httpx.ReadTimeout: f"no byte for {limits.timeout:g}s",
                httpx.WriteTimeout: "sending the request",
                httpx.PoolTimeout: "waiting for a connection",
            }.get(type(error), type(error).__name__)
            raise FetchError(
                f"{where}: timed out ({what}) after {received:,} bytes in {elapsed:.1f}s"
            ) from None
        except httpx.HTTPError as error:
            elapsed = self.clock.monotonic() - started
            raise FetchError(
                f"{where}: {type(error).__name__}: {error} after {received:,} bytes in {elapsed:.1f}s"
            ) from None
        return received


def _xrpc_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        return f"{body.get('error')}: {body.get('message')}"
    return response.reason_phrase
