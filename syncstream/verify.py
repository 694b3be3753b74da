"""Authenticity: a repository commit checked against its author's key (the Sync spec).

A commit (a repository's root, a ``#commit``'s or a ``#sync``'s block) must be a map of
``version`` 3, name the DID it is said to be of, and carry a ``sig`` over the DAG-CBOR of
the commit without it, by the ``#atproto`` key of the DID's document: ECDSA over SHA-256, a
64-byte ``r || s`` in its low-S form (a DER signature, or the high-S twin of a valid one, is
refused). secp256k1 keys are checked with libsecp256k1 (``coincurve``), P-256 keys with
OpenSSL (``cryptography``). Keys come from DID documents resolved with the SDK (did:plc
through the PLC directory, did:web over HTTPS), cached per DID; a failed check is retried once
with the document fetched afresh (a rotated key).

When a document cannot be had the key is *unavailable*, which is not a failure: callers write
such a commit as unverified. A failure is not asked again for ``retry_seconds``, and it is one
account's, not every account's: the PLC directory unreachable (or answering 5xx) is one window
for every did:plc, a did:web host that fails is a window for that host, and a DID the
directory cannot serve (a 4xx, a document that does not parse) is a window for that DID.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import coincurve
import httpx
import libipld
from atproto_crypto.algs import ALGORITHM_TO_CLASS
from atproto_crypto.consts import SECP256K1_JWT_ALG
from atproto_crypto.did import parse_did_key
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

if TYPE_CHECKING:
    from atproto_core.did_doc import DidDocument

from syncstream.errors import KeyUnavailable

__all__ = ["DidDocuments", "Verdict", "check_commit", "verify_commit", "verify_signature"]

COMMIT_VERSION = 3
_WINDOWS = 100_000  # a bound on the failure windows kept, whatever the stream names


def failure_window(did: str, error: BaseException | None = None) -> str:
    """Whose failure a failed lookup of ``did`` is: ``plc`` (the directory itself),
    ``web:HOST``, or the DID alone. ``error`` None: where a lookup would be asked."""
    if did.startswith("did:web:"):
        return "web:" + did.removeprefix("did:web:").split(":", 1)[0]
    if not did.startswith("did:plc:"):
        return did
    if error is None:
        return "plc"
    cause = error.__cause__
    if isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code < 500:
        return did  # the directory answered: this DID's trouble
    if isinstance(cause, httpx.HTTPError):
        return "plc"  # unreachable, timed out, or failing (5xx)
    return did  # a document that does not parse


class DidDocuments:
    """DID documents and their signing keys, resolved through the SDK and cached per DID.

    Thread-safe: the backfill's fetch threads and the writer's thread share one."""

    def __init__(self, plc_url: str, *, timeout: float = 3.0, retry_seconds: float = 30.0) -> None:
        from atproto_identity.did.resolver import DidResolver  # noqa: PLC0415 (imported at set-up)

        self.plc_url = plc_url
        self._resolver = DidResolver(plc_url=plc_url, timeout=timeout)
        self.retry_seconds = retry_seconds
        self._documents: dict[str, DidDocument] = {}
        self._keys: dict[str, str] = {}  # the signing key of each document in ``_documents``
        # failure windows: "plc", "web:HOST" or a DID -> no lookup before this (monotonic)
        self._failed: dict[str, float] = {}
        self._lock = threading.Lock()
        self.lookups = 0  # documents fetched
        self.unavailable = 0  # lookups that failed

    def document(self, did: str, *, refresh: bool = False) -> DidDocument:
        """``did``'s document; ``KeyUnavailable`` says why there is none."""
        with self._lock:
            cached = None if refresh else self._documents.get(did)
            if cached is not None:
                return cached
            now = time.monotonic()
            for window in (failure_window(did), did):
                if now < self._failed.get(window, 0.0):
                    self.unavailable += 1
                    where = "the directory" if window == "plc" else window
                    raise KeyUnavailable(f"{where} failed for {did} less than {self.retry_seconds:g}s ago")
        try:
            self.lookups += 1
            document = self._resolver.resolve(did)
        except Exception as error:  # the SDK wraps transport errors; a bad document raises too
            self._fail(failure_window(did, error))
            raise KeyUnavailable(
                f"resolving {did}: {type(error).__name__}: {error or error.__cause__}"
            ) from None
        if document is None:
            self._fail(did)
            raise KeyUnavailable(f"{did} has no DID document at {self.plc_url}")
        with self._lock:
            self._documents[did] = document
            self._keys.pop(did, None)  # read again from this document
        return document

    def _fail(self, window: str) -> None:
        with self._lock:
            self.unavailable += 1
            if len(self._failed) > _WINDOWS:
                self._failed.clear()
            self._failed[window] = time.monotonic() + self.retry_seconds

    def key(self, did: str, *, refresh: bool = False) -> str:
        """``did``'s signing key as a ``did:key`` (kept with its document: the SDK reads it
        from the document's verification methods afresh at each call)."""
        if not refresh:
            known = self._keys.get(did)
            if known is not None:
                return known
        document = self.document(did, refresh=refresh)
        try:
            key = document.get_did_key()
        except Exception as error:  # a key of a type the SDK does not know
            raise KeyUnavailable(f"the DID document of {did} has an unreadable key: {error}") from None
        if not isinstance(key, str):
            raise KeyUnavailable(f"the DID document of {did} has no #atproto key")
        with self._lock:
            if self._documents.get(did) is document:  # not forgotten meanwhile
                self._keys[did] = key
        return key

    def forget(self, did: str) -> None:
        """Drop ``did``'s cached document (an ``#identity`` event: its key may have changed)."""
        with self._lock:
            self._documents.pop(did, None)
            self._keys.pop(did, None)

    def __len__(self) -> int:
        return len(self._documents)


def check_commit(commit: object, did: str) -> str | None:
    """Why ``commit`` is not a signed version-3 commit of ``did``, or None."""
    if not isinstance(commit, dict):
        return "the commit is not a map"
    if commit.get("version") != COMMIT_VERSION:
        return f"the commit is version {commit.get('version')!r}, not {COMMIT_VERSION}"
    if commit.get("did") != did:
        return f"the commit is of {commit.get('did')!r}, not {did}"
    if not isinstance(commit.get("sig"), bytes):
        return "the commit is not signed"
    return None


@lru_cache(maxsize=65_536)
def _public_key(did_key: str) -> tuple[coincurve.PublicKey | EllipticCurvePublicKey, int]:
    """A ``did:key`` parsed (secp256k1 for libsecp256k1, P-256 for OpenSSL), and its curve's
    order: parsed once per key, not once per commit (a third of the cost of a check)."""
    parsed = parse_did_key(did_key)
    algorithm = ALGORITHM_TO_CLASS[parsed.jwt_alg]()
    if parsed.jwt_alg == SECP256K1_JWT_ALG:
        return coincurve.PublicKey(parsed.key_bytes), algorithm.curve_order
    return algorithm.get_elliptic_curve_public_key(parsed.key_bytes), algorithm.curve_order


def _der_integer(value: int) -> bytes:
    body = value.to_bytes((value.bit_length() + 8) // 8, "big")  # a leading 0 when the top bit is set
    return b"\x02" + bytes((len(body),)) + body


def verify_signature(did_key: str, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (64-byte ``r || s``, low-S) over ``message`` is ``did_key``'s."""
    try:
        public, order = _public_key(did_key)
    except Exception:  # a key of a shape the SDK refuses
        return False
    if len(signature) != 64:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not 0 < r < order or not 0 < s <= order // 2:  # the high-S twin is refused (malleability)
        return False
    if isinstance(public, coincurve.PublicKey):
        sequence = _der_integer(r) + _der_integer(s)
        try:
            return public.verify(b"\x30" + bytes((len(sequence),)) + sequence, message)
        except ValueError:
            return False
    try:
        public.verify(encode_dss_signature(r, s), message, ECDSA(SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def _signed_by(commit: dict[str, Any], key: str) -> bool:
    """What ``atproto_crypto.verify.verify_signature`` checks, the key parsed once."""
    unsigned = {name: value for name, value in commit.items() if name != "sig"}
    return verify_signature(key, libipld.encode_dag_cbor(unsigned), commit["sig"])


class Verdict(NamedTuple):
    verified: Literal[True, False] | None  # None: the key could not be had
    reason: str | None = None


def verify_commit(documents: DidDocuments, did: str, commit: object) -> Verdict:
    """Check ``commit`` against ``did``'s key, refreshing the key once when it fails."""
    reason = check_commit(commit, did)
    if reason is not None:
        return Verdict(False, reason)
    assert isinstance(commit, dict)
    try:
        key = documents.key(did)
    except KeyUnavailable as error:
        return Verdict(None, str(error))
    if _signed_by(commit, key):
        return Verdict(True)
    try:
        fresh = documents.key(did, refresh=True)
    except KeyUnavailable as error:
        return Verdict(None, f"the signature fails with the cached key and {error}")
    if fresh != key and _signed_by(commit, fresh):
        return Verdict(True)
    return Verdict(False, f"the commit's signature does not verify with {did}'s key")
