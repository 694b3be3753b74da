"""Signing keys for rehearsals: a repository commit signed as a PDS signs it (secp256k1,
SHA-256, low-S, 64-byte ``r || s``), and the ``did:key`` a DID document publishes for it.

Only the loopback PDS, the tests and the benchmarks sign; verification is
``syncstream.verify``'s (libsecp256k1 for secp256k1, OpenSSL for P-256).
"""

from __future__ import annotations

from typing import Any

import libipld
from atproto_crypto.consts import SECP256K1_CURVE_ORDER, SECP256K1_JWT_ALG
from atproto_crypto.did import format_did_key
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = ["REHEARSAL_SEED", "SigningKey", "resign_car", "sign_commit"]

REHEARSAL_SEED = 1  # the key rehearsal repositories are signed with unless told otherwise


class SigningKey:
    """A secp256k1 key pair (``seed`` makes it reproducible, for rehearsal files)."""

    def __init__(self, seed: int | None = None) -> None:
        curve = ec.SECP256K1()
        self._key = ec.generate_private_key(curve) if seed is None else ec.derive_private_key(seed, curve)
        public = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.did_key: str = format_did_key(SECP256K1_JWT_ALG, public)

    @property
    def multibase(self) -> str:
        """The key as a DID document's ``publicKeyMultibase`` (a Multikey)."""
        return self.did_key.removeprefix("did:key:")

    def sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        if s > SECP256K1_CURVE_ORDER // 2:  # the low-S form, the only one verifiers accept
            s = SECP256K1_CURVE_ORDER - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign_commit(commit: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """The commit with ``sig`` over the DAG-CBOR of the commit without it."""
    unsigned = {name: value for name, value in commit.items() if name != "sig"}
    return {**unsigned, "sig": key.sign(libipld.encode_dag_cbor(unsigned))}


def resign_car(car: bytes, key: SigningKey, **changes: Any) -> bytes:
    """The repository CAR with its root commit signed by ``key`` (after ``changes`` to its
    fields; ``sig=None`` leaves it unsigned): a real repository's records under a rehearsal key."""
    from syncstream.firehose.decode import car_blocks, uvarint  # noqa: PLC0415
    from syncstream.firehose.encode import cid_for, encode_car  # noqa: PLC0415

    length, pos = uvarint(car, 0)
    root = libipld.decode_dag_cbor(car[pos : pos + length])["roots"][0]
    spans = car_blocks(car)
    commit = {**libipld.decode_dag_cbor(car[slice(*spans[root])]), **changes}
    if changes.get("sig", b"") is not None:
        commit = sign_commit(commit, key)
    commit = {name: value for name, value in commit.items() if value is not None or name in ("prev", "data")}
    block = libipld.encode_dag_cbor(commit)
    others = [(cid, car[start:end]) for cid, (start, end) in spans.items() if cid != root]
    return encode_car([cid_for(block)], [(cid_for(block), block), *others])
