"""A polite backfill: a PDS's rate limits (429s, RateLimit-* headers) are waited out, a host's
calls pass a token bucket, a wait past the caller's deadline is refused. Time is a
``ManualClock``: nothing here sleeps."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from syncstream.backfill.fetch import Fetcher
from syncstream.backfill.polite import HostGate, Waited, reset_delay
from syncstream.servers.keys import REHEARSAL_SEED, SigningKey, resign_car
from syncstream.servers.pds import LoopbackPds, PdsFault
from syncstream.verify import DidDocuments
from tests.helpers import CORPUS, ManualClock

KEY = SigningKey(REHEARSAL_SEED)
DID = "did:plc:53iucmf5ldftgqyf2ac7hmhd"
CAR = resign_car((CORPUS / "repo.car").read_bytes(), KEY)


def test_a_429_is_waited_out_and_counted() -> None:
    """A PDS that answers 429 with RateLimit-* headers twice: the host is paused until its
    reset, the call retried, the repository fetched; the 429s and the waits are counted."""
    clock = ManualClock()
    with LoopbackPds({DID: CAR}, {DID: PdsFault("ratelimit", 2)}, key=KEY) as pds:
        fetcher = Fetcher(DidDocuments(pds.url), endpoints="any", clock=clock)
        fetched = fetcher.fetch(DID, Path("/dev/null"))
        fetcher.close()
        assert pds.requests == [DID, DID, DID]
    assert fetched.bytes == len(CAR)
    stats = fetcher.gate.stats()
    assert stats["rate_limited"] == 2 and stats["waits"] >= 1
    # each pause lasts until the reset the PDS sent (a whole second after its time), no longer
    assert 0 < stats["wait_seconds"] <= 2 and stats["wait_seconds"] == round(sum(clock.waited), 3)


def test_the_token_bucket_admits_calls_at_its_rate() -> None:
    """Two calls per period with a bucket of two: the third waits for a token, exactly as long
    as the bucket takes to refill one (period / calls)."""
    clock = ManualClock()
    gate = HostGate(concurrency=1, calls=2, period=300, clock=clock)
    stop = threading.Event()
    for _ in range(3):
        gate.acquire("pds.example", float("inf"), stop)
        gate.release("pds.example")
    assert gate.stats() == {"waits": 1, "wait_seconds": 150.0, "rate_limited": 0}


def test_a_429_without_headers_backs_off_exponentially() -> None:
    """429s in a row without a reset time pause the host 1, 2, 4 s; a call waits the pause out;
    an answer that is not a 429 ends the backoff."""
    clock = ManualClock()
    gate = HostGate(clock=clock)
    assert [gate.answered("pds.example", 429, {}) for _ in range(3)] == [1.0, 2.0, 4.0]
    gate.acquire("pds.example", float("inf"), threading.Event())
    gate.release("pds.example")
    assert gate.stats() == {"waits": 1, "wait_seconds": 4.0, "rate_limited": 3}
    assert gate.answered("pds.example", 200, {}) == 0.0
    assert gate.answered("pds.example", 429, {}) == 1.0


def test_a_wait_past_the_deadline_is_refused_and_a_stop_ends_it() -> None:
    """A turn that would come after the caller's deadline: Waited, saying how long it waited;
    a stop asked for ends the wait at once."""
    clock = ManualClock(start=1000.0)
    gate = HostGate(clock=clock)
    gate.answered("pds.example", 429, {"retry-after": "60"})
    with pytest.raises(Waited, match=r"waited 10\.0s for a turn at pds\.example"):
        gate.acquire("pds.example", 1010.0, threading.Event())
    stop = threading.Event()
    stop.set()
    with pytest.raises(Waited, match="stopping"):
        gate.acquire("pds.example", float("inf"), stop)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"ratelimit-reset": "1000000010"}, 10.0),
        ({"ratelimit-reset": "3"}, 3.0),
        ({}, None),
    ],
)
def test_reset_delays_are_read_from_either_header(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After in seconds; RateLimit-Reset as Bluesky sends it (a Unix time) or as seconds."""
    assert reset_delay(headers, now=1_000_000_000) == expected
