"""Signatures and keys: secp256k1 through libsecp256k1 and P-256 through OpenSSL against the
interop ``crypto/signature-fixtures.json`` (valid, high-S twins, DER encodings); a DID whose
document cannot be had is that account's trouble alone (a did:web host down, a DID the PLC
cannot serve), while the PLC directory's own outage is one window; and a real commit's CAR
slice damaged byte by byte is always a counted refusal, never an exception."""

from __future__ import annotations

import base64
import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from syncstream.errors import KeyUnavailable
from syncstream.firehose.decode import car_blocks, decode_frame
from syncstream.firehose.encode import OpSpec, encode_commit_frame, encode_frame
from syncstream.registry.population import Population
from syncstream.servers.keys import REHEARSAL_SEED, SigningKey, sign_commit
from syncstream.servers.pds import LoopbackPds
from syncstream.store import StateStore
from syncstream.verify import DidDocuments, verify_signature
from syncstream.write.authentic import StreamVerifier
from syncstream.write.chains import ChainView
from tests.forgery import badly_signed, body_of, tid
from tests.helpers import FIXTURES, TIME, corpus_frames, post
from tests.test_verify_proof import documents

KEY = SigningKey(REHEARSAL_SEED)
PLC_DID = "did:plc:studystudystudystudystu"
WEB_DID = "did:web:127.0.0.1"  # nothing answers HTTPS here: the host is down


def b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


SIGNATURES: list[dict[str, Any]] = json.loads(
    (FIXTURES / "atproto-interop-tests" / "crypto" / "signature-fixtures.json").read_text()
)


@pytest.mark.parametrize("case", SIGNATURES, ids=lambda c: c["comment"])
def test_the_interop_signature_fixtures(case: dict[str, Any]) -> None:
    assert verify_signature(case["publicKeyDid"], b64(case["messageBase64"]), b64(case["signatureBase64"])) is (
        case["validSignature"])  # fmt: skip


def signed(did: str, seq: int) -> bytes:
    return encode_commit_frame(seq=seq, repo=did, rev=tid(1_783_175_887 + seq), time=TIME,
                               ops=[OpSpec("create", f"app.bsky.feed.post/p{seq}", post())],
                               sign=partial(sign_commit, key=KEY))  # fmt: skip


def test_an_unreachable_did_web_host_is_that_accounts_trouble_alone(tmp_path: Path) -> None:
    """A study user's did:web host down leaves that user's commit unverified (key_unavailable);
    the forged commit of a did:plc study user that follows is refused, not written unverified."""
    population = Population(frozenset({PLC_DID, WEB_DID}), frozenset())
    with LoopbackPds({PLC_DID: b""}, key=KEY) as plc, StateStore(tmp_path / "s.sqlite") as state:
        verifier = StreamVerifier(DidDocuments(plc.url, timeout=2.0), "study")
        chains = ChainView(state)
        web = verifier.check(decode_frame(signed(WEB_DID, 1)), population, chains)
        forged = verifier.check(decode_frame(badly_signed(signed(PLC_DID, 2))), population, chains)
        fine = verifier.check(decode_frame(signed(PLC_DID, 3)), population, chains)
    assert web.decoded is not None and web.decoded.commit is not None and web.decoded.commit.verified is None
    assert forged.decoded is None
    assert (
        fine.decoded is not None and fine.decoded.commit is not None and fine.decoded.commit.verified is True
    )
    assert verifier.counts == {"key_unavailable": 1, "bad_signature": 1, "verified": 1}


def test_a_did_the_directory_cannot_serve_is_one_window_and_its_outage_is_one_for_all() -> None:
    """A DID the PLC answers 404 for is not asked again, while another is; with the directory
    itself unreachable, the first failure spares every other did:plc a timeout of its own."""
    with LoopbackPds({PLC_DID: b""}, key=KEY) as plc:
        documents_ = DidDocuments(plc.url)
        missing = "did:plc:nobodynobodynobodynobod"
        for _ in range(2):
            with pytest.raises(KeyUnavailable):
                documents_.key(missing)
        assert documents_.key(PLC_DID) == KEY.did_key
        assert documents_.lookups == 2  # the missing DID once, then the other
        url = plc.url
    gone = DidDocuments(url, timeout=1.0)
    for did in (PLC_DID, missing, "did:plc:thirdthirdthirdthirdthi"):
        with pytest.raises(KeyUnavailable):
            gone.key(did)
    assert (gone.lookups, gone.unavailable) == (1, 3)


def test_a_damaged_car_slice_is_always_a_counted_refusal(tmp_path: Path) -> None:
    """Every byte of a real commit's CAR slice past its header flipped in turn (one in three),
    and the slice cut inside a block at every tenth length: each is refused and counted, none raises."""
    frame = next(f for f in corpus_frames() if b"#commit" in f[:20])
    header, body = body_of(frame)
    car: bytes = body["blocks"]
    spans = car_blocks(car).values()
    start = min(begin for begin, _ in spans) - 37  # the first block's length byte
    ends = {end for _, end in spans}  # a cut here drops whole blocks: those the proof needs, or not
    docs = documents()
    population = Population(frozenset(docs), frozenset())
    with LoopbackPds({}, documents=docs) as plc, StateStore(tmp_path / "s.sqlite") as state:
        verifier = StreamVerifier(DidDocuments(plc.url), "study")
        chains = ChainView(state)
        variants = [car[:i] + bytes((car[i] ^ 0x55,)) + car[i + 1 :] for i in range(start, len(car), 3)]
        variants += [car[:cut] for cut in range(start, len(car), 10) if cut not in ends]
        for variant in variants:
            decoded = decode_frame(encode_frame(header, {**body, "blocks": variant}))
            assert verifier.check(decoded, population, chains).decoded is None
    assert sum(verifier.counts.values()) == len(variants)
    assert "verified" not in verifier.counts


def test_a_keys_cache_follows_its_document() -> None:
    """The signing key is kept with its DID's document: asked again, it is not looked up; a
    refresh or an ``#identity`` (``forget``) reads the document served now, with its new key."""
    docs = documents()
    did, other = sorted(docs)[:2]
    with LoopbackPds({}, documents={did: docs[did]}) as plc:
        directory = DidDocuments(plc.url)
        first = directory.key(did)
        rotated = json.loads(json.dumps(docs[other]).replace(other, did))  # another key, same DID
        plc.documents[did] = rotated
        assert directory.key(did) == first
        assert directory.lookups == 1
        second = directory.key(did, refresh=True)
        assert second != first
        assert directory.key(did) == second
        plc.documents[did] = docs[did]
        directory.forget(did)
        assert directory.key(did) == first
        assert directory.lookups == 3
