"""Authenticity: a repository commit checked against its author's key (the Sync spec).

A commit (a repository's root, a ``#commit``'s or a ``#sync``'s block) must be a map of
``version`` 3, name the DID it is said to be of, and carry a ``sig`` over the DAG-CBOR of
the commit without it, by the ``#atproto`` key of the DID's document. Keys come from DID
documents resolved with the SDK (did:plc through the PLC directory, did:web over HTTPS),
cached per DID; a failed check is retried once with the document fetched afresh (a rotated
key). When the directory cannot be reached the key is *unavailable*, which is not a failure:
callers write such a commit as unverified. A directory that failed is not asked again for
``retry_seconds``, so that a directory that is down costs one timeout, not one per commit.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import libipld
from atproto_crypto.algs import ALGORITHM_TO_CLASS
from atproto_crypto.did import parse_did_key
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

if TYPE_CHECKING:
    from atproto_core.did_doc import DidDocument

from syncstream.errors import KeyUnavailable

__all__ = ["DidDocuments", "Verdict", "check_commit", "verify_commit"]

COMMIT_VERSION = 3


class DidDocuments:
    """DID documents and their signing keys, resolved through the SDK and cached per DID.

    Thread-safe: the backfill's fetch threads and the writer's thread share one."""

    def __init__(self, plc_url: str, *, timeout: float = 3.0, retry_seconds: float = 30.0) -> None:
        from atproto_identity.did.resolver import DidResolver  # noqa: PLC0415 (imported at set-up)

        self.plc_url = plc_url
        self._resolver = DidResolver(plc_url=plc_url, timeout=timeout)
        self.retry_seconds = retry_seconds
        self._documents: dict[str, DidDocument] = {}
        self._down_until = 0.0  # the directory failed: no lookup before this (monotonic)
        self._missing: dict[str, float] = {}  # DIDs without a usable document: not before (monotonic)
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
            if now < self._down_until or now < self._missing.get(did, 0.0):
                self.unavailable += 1
                raise KeyUnavailable(f"the directory {self.plc_url} failed for it less than "
                                     f"{self.retry_seconds:g}s ago")  # fmt: skip
        try:
            self.lookups += 1
            document = self._resolver.resolve(did)
        except Exception as error:  # the SDK wraps transport errors; a bad document raises too
            with self._lock:
                self.unavailable += 1
                self._down_until = time.monotonic() + self.retry_seconds
            raise KeyUnavailable(
                f"resolving {did}: {type(error).__name__}: {error or error.__cause__}"
            ) from None
        if document is None:
            with self._lock:
                self.unavailable += 1
                if len(self._missing) > 100_000:  # a bound, whatever the stream names
                    self._missing.clear()
                self._missing[did] = time.monotonic() + self.retry_seconds
            raise KeyUnavailable(f"{did} has no DID document at {self.plc_url}")
        with self._lock:
            self._documents[did] = document
        return document

    def key(self, did: str, *, refresh: bool = False) -> str:
        """``did``'s signing key as a ``did:key``."""
        document = self.document(did, refresh=refresh)
        try:
            key = document.get_did_key()
        except Exception as error:  # a key of a type the SDK does not know
            raise KeyUnavailable(f"the DID document of {did} has an unreadable key: {error}") from None
        if not isinstance(key, str):
            raise KeyUnavailable(f"the DID document of {did} has no #atproto key")
        return key

    def forget(self, did: str) -> None:
        """Drop ``did``'s cached document (an ``#identity`` event: its key may have changed)."""
        with self._lock:
            self._documents.pop(did, None)

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
def _public_key(did_key: str) -> tuple[EllipticCurvePublicKey, int]:
    """A ``did:key`` parsed by the SDK (P-256 or secp256k1), and its curve's order: parsed once
    per key, not once per commit (a third of the cost of a check)."""
    parsed = parse_did_key(did_key)
    algorithm = ALGORITHM_TO_CLASS[parsed.jwt_alg]()
    return algorithm.get_elliptic_curve_public_key(parsed.key_bytes), algorithm.curve_order


def _signed_by(commit: dict[str, Any], key: str) -> bool:
    """What ``atproto_crypto.verify.verify_signature`` checks (ECDSA over SHA-256 of the
    unsigned commit's DAG-CBOR, a 64-byte ``r || s`` in its low-S form), the key parsed once."""
    signature = commit["sig"]
    try:
        public, order = _public_key(key)
    except Exception:  # a key of a shape the SDK refuses
        return False
    if len(signature) != 64:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if s > order // 2:  # the high-S twin of a valid signature is refused (malleability)
        return False
    unsigned = {name: value for name, value in commit.items() if name != "sig"}
    try:
        public.verify(encode_dss_signature(r, s), libipld.encode_dag_cbor(unsigned), ECDSA(SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


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
