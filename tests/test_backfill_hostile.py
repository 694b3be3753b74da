"""Backfill against hostile or broken peers: a PDS that trickles, answers 429, or is named by an
http or private endpoint; a CAR whose MST loops, shares subtrees or is out of order; a forged,
unsigned, wrong-version or other account's repository. Each fails that DID alone, with its
reason, and writes nothing of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import libipld
import pytest

from benchmarks.repos import build_repo
from syncstream.backfill.__main__ import main as backfill_main
from syncstream.backfill.fetch import Fetcher, FetchLimits, endpoint_problem
from syncstream.backfill.repo import RepoFile
from syncstream.errors import FetchError, RepoError
from syncstream.firehose.encode import cid_for, encode_car
from syncstream.servers.keys import REHEARSAL_SEED, SigningKey, resign_car, sign_commit
from syncstream.servers.pds import LoopbackPds, PdsFault
from syncstream.store import Backfill, StateStore
from syncstream.verify import DidDocuments, verify_commit
from tests.helpers import CORPUS, tree, write_users

KEY = SigningKey(REHEARSAL_SEED)
DID = "did:plc:53iucmf5ldftgqyf2ac7hmhd"
CAR = resign_car((CORPUS / "repo.car").read_bytes(), KEY)


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite"), "-q"]


def run_backfill(root: Path, pds: LoopbackPds, *extra: str, study: tuple[str, ...] = (DID,)) -> int:
    users = write_users(root / "study.txt", study)
    StateStore(root / "s.sqlite").close()  # the writer's part: a backfill creates no store
    return backfill_main([*store(root), "--study-users", str(users), "--plc-url", pds.url, *extra])


def recorded(root: Path) -> dict[str, Backfill]:
    with StateStore(root / "s.sqlite") as state:
        return state.backfills.recorded()


def signed_car(did: str, nodes: list[tuple[bytes, bytes]], root: bytes, key: SigningKey = KEY) -> bytes:
    """A CAR of ``nodes`` whose signed commit points at ``root``."""
    commit = libipld.encode_dag_cbor(
        sign_commit({"did": did, "version": 3, "data": root, "rev": "3mptbypluud2a", "prev": None}, key)
    )
    return encode_car([cid_for(commit)], [(cid_for(commit), commit), *nodes])


def record_block() -> tuple[bytes, bytes]:
    block = libipld.encode_dag_cbor(
        {"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2026-07-04T00:00:00Z"}
    )
    return cid_for(block), block


def shared_subtrees(levels: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """An MST DAG of ``levels`` small nodes, each pointing twice at the one below: a walk that
    does not remember its nodes visits 2^levels of them."""
    value, block = record_block()
    nodes = [(value, block)]
    below = None
    for level in range(levels):
        node = libipld.encode_dag_cbor(
            {
                "l": below,
                "e": [{"p": 0, "k": f"app.bsky.feed.post/3k{level:04d}".encode(), "v": value, "t": below}],
            }
        )
        below = cid_for(node)
        nodes.append((below, node))
    assert below is not None
    return nodes, below


def test_an_mst_with_shared_subtrees_is_refused_at_the_second_visit() -> None:
    """24 nodes that would make 2^24 visits: refused as soon as a node is reached twice."""
    nodes, root = shared_subtrees(24)
    repo = RepoFile(signed_car(DID, nodes, root))
    try:
        with pytest.raises(RepoError, match="twice"):
            repo.check()
    finally:
        repo.close()


def test_an_mst_that_loops_is_refused() -> None:
    """A node whose subtree is itself (a CID that its block cannot have): refused, not walked."""
    value, block = record_block()
    fake = cid_for(b"the loop")
    node = libipld.encode_dag_cbor(
        {"l": fake, "e": [{"p": 0, "k": b"app.bsky.feed.post/3k", "v": value, "t": None}]}
    )
    repo = RepoFile(signed_car(DID, [(fake, node), (value, block)], fake))
    try:
        with pytest.raises(RepoError, match=r"does not match its CID|twice"):
            repo.check()
    finally:
        repo.close()


def test_keys_out_of_order_are_refused() -> None:
    """An MST whose keys do not increase is no repository."""
    value, block = record_block()
    entries = [
        {"p": 0, "k": b"app.bsky.feed.post/3kb", "v": value, "t": None},
        {"p": 0, "k": b"app.bsky.feed.post/3ka", "v": value, "t": None},
    ]
    node = libipld.encode_dag_cbor({"l": None, "e": entries})
    repo = RepoFile(signed_car(DID, [(cid_for(node), node), (value, block)], cid_for(node)))
    try:
        with pytest.raises(RepoError, match="out of order"):
            repo.check()
    finally:
        repo.close()


def test_a_looping_repository_fails_its_did_and_writes_nothing(tmp_path: Path) -> None:
    """Served by a PDS, the shared-subtree repository fails with its reason; nothing is written."""
    nodes, root = shared_subtrees(24)
    with LoopbackPds({DID: signed_car(DID, nodes, root)}, key=KEY) as pds:
        assert run_backfill(tmp_path, pds) == 1
    assert "twice" in (recorded(tmp_path)[DID][2] or "")
    assert tree(tmp_path / "cache") == set()


FORGERIES: dict[str, tuple[Callable[[], bytes], str]] = {
    "signed by another key": (lambda: resign_car(CAR, SigningKey(99)), "does not verify"),
    "unsigned": (lambda: resign_car(CAR, KEY, sig=None), "not signed"),
    "version 99": (lambda: resign_car(CAR, KEY, version=99), "version 99"),
    "another account's": (lambda: resign_car(CAR, KEY, did="did:plc:otherotherotherotherothe"), "is of"),
    "the real one, whose key the directory does not publish": (
        (CORPUS / "repo.car").read_bytes,
        "does not verify",
    ),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_a_forged_repository_fails_its_did_and_writes_nothing(tmp_path: Path, forgery: str) -> None:
    """A repository whose commit is not the account's signed version-3 commit is refused with the
    reason, recorded failed, and nothing of it reaches the cache."""
    build, reason = FORGERIES[forgery]
    with LoopbackPds({DID: build()}, key=KEY) as pds:
        assert run_backfill(tmp_path, pds) == 1
    status, _, why, _ = recorded(tmp_path)[DID]
    assert status == "failed" and reason in (why or ""), why
    assert tree(tmp_path / "cache") == set()


def test_a_rotated_key_is_fetched_again_once() -> None:
    """The cached key fails, the document is fetched afresh once, and the new key verifies."""
    old, new = SigningKey(5), SigningKey(6)
    commit = sign_commit({"did": DID, "version": 3, "data": None, "rev": "3k", "prev": None}, new)
    with LoopbackPds({DID: CAR}, key=old) as pds:
        documents = DidDocuments(pds.url)
        assert documents.key(DID) == old.did_key
        pds.key = new
        assert verify_commit(documents, DID, commit).verified is True
        assert documents.lookups == 2


def test_a_did_document_without_a_handle_is_backfilled(tmp_path: Path) -> None:
    """No alsoKnownAs (no handle) is no obstacle: the backfill needs the PDS and the key."""
    with LoopbackPds({DID: CAR}, {DID: PdsFault("nohandle")}, key=KEY) as pds:
        assert "alsoKnownAs" not in pds.document(DID)
        assert run_backfill(tmp_path, pds) == 0
    assert recorded(tmp_path)[DID][0] == "done"


def test_a_did_that_is_not_a_study_user_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--did X for an X who is not a study user: exit 2 naming X, nothing fetched or recorded."""
    stranger = "did:plc:strangerstrangerstrange"
    with LoopbackPds({DID: CAR, stranger: build_repo(stranger, 4)}, key=KEY) as pds:
        assert run_backfill(tmp_path, pds, "--did", stranger) == 2
        assert pds.requests == []
    assert stranger in capsys.readouterr().err
    assert recorded(tmp_path) == {}


def test_a_trickling_pds_is_cut_at_the_deadline(tmp_path: Path) -> None:
    """A byte every 0.05s, never silent: the fetch is cut at its deadline, the reason says where
    and after how long, and the DID is recorded failed (retried later)."""
    with LoopbackPds({DID: CAR}, {DID: PdsFault("trickle", 0.05)}, key=KEY) as pds:
        assert run_backfill(tmp_path, pds, "--deadline", "1") == 1
        host = pds.url.split("://")[1]
    reason = recorded(tmp_path)[DID][2] or ""
    assert f"getRepo of {DID} at {host}: deadline of 1s passed" in reason, reason


def test_a_trickling_pds_is_cut_under_the_minimum_rate() -> None:
    """Past its grace period, a transfer slower than the minimum mean rate is cut."""
    with LoopbackPds({DID: CAR}, {DID: PdsFault("trickle", 0.02)}, key=KEY) as pds:
        fetcher = Fetcher(DidDocuments(pds.url), endpoints="any",
                          limits=FetchLimits(grace=0.3, min_rate=1000, deadline=60))  # fmt: skip
        with pytest.raises(FetchError, match=r"too slow, \d+ bytes in [\d.]+s .* under the minimum 1,000"):
            fetcher.fetch(DID, Path("/dev/null"))
        fetcher.close()


def test_a_timeout_says_what_timed_out_where_and_after_how_long(tmp_path: Path) -> None:
    """A PDS silent past --timeout: the reason names the call, the host and the time."""
    with LoopbackPds({DID: CAR}, {DID: PdsFault("slow", 2.0)}, key=KEY) as pds:
        assert run_backfill(tmp_path, pds, "--timeout", "0.3") == 1
        host = pds.url.split("://")[1]
    reason = recorded(tmp_path)[DID][2] or ""
    assert reason.startswith(f"getRepo of {DID} at {host}: timed out (no byte for 0.3s) after 0 bytes in "), (
        reason
    )


def test_a_429_past_the_deadline_fails_the_did(tmp_path: Path) -> None:
    """A host that asks for a pause longer than what is left of the deadline: failed, saying so."""
    with LoopbackPds({DID: CAR}, {DID: PdsFault("ratelimit", 100)}, key=KEY) as pds:
        assert run_backfill(tmp_path, pds, "--deadline", "0.5") == 1
    assert "rate limited (429)" in (recorded(tmp_path)[DID][2] or "")


@pytest.mark.parametrize(
    "url",
    [
        "http://pds.example.com",
        "https://127.0.0.1",
        "https://10.1.2.3",
        "https://169.254.169.254",
        "https://[::1]",
        "https://localhost",
        "https://pds.internal",
        "https://pds",
        "https://pds.example.com:8443",
        "https://user@pds.example.com",
    ],
)
def test_a_pds_endpoint_must_be_https_on_a_public_host(url: str) -> None:
    """Plain http, a private, loopback or link-local address, a local name, another port: refused."""
    assert endpoint_problem(url, resolve=False) is not None


@pytest.mark.parametrize(
    "url", ["https://1.1.1.1", "https://morel.us-east.host.bsky.network", "https://pds.example.com:443/"]
)
def test_a_public_https_endpoint_is_taken(url: str) -> None:
    assert endpoint_problem(url, resolve=False) is None


def test_a_document_naming_a_private_endpoint_fails_its_did(tmp_path: Path) -> None:
    """With --pds-endpoints public, the loopback PDS a document names is refused, with the reason."""
    with LoopbackPds({DID: CAR}, key=KEY) as pds:
        assert run_backfill(tmp_path, pds, "--pds-endpoints", "public") == 1
        assert pds.requests == []
    assert "is not https" in (recorded(tmp_path)[DID][2] or "")


def test_only_fetching_dids_are_held_and_a_hold_overflow_fails_the_backfill(tmp_path: Path) -> None:
    """Three study users, one repository at a time: only the one being fetched is held. Past its
    bound its held commits are written as live, in order, the backfill fails (retried later),
    and the cursor moves past them."""
    from syncstream.firehose.encode import OpSpec
    from syncstream.write.backfill import BackgroundBackfill
    from syncstream.write.context import setup_cache_write_system
    from syncstream.write.holds import HoldLimits
    from syncstream.write.writer import CacheWriter
    from tests.helpers import commit, post

    others = ["did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"]
    # every repository served, at a trickle: the next DID's fetch is still under way (held) when
    # the first one fails (a DID without a document would fail at once, and race the assertion)
    repos = {DID: CAR, **{did: build_repo(did, 4) for did in others}}
    with (
        LoopbackPds(repos, {did: PdsFault("trickle", 0.05) for did in [DID, *others]}, key=KEY) as pds,
        setup_cache_write_system(tmp_path / "cache", tmp_path / "s.sqlite",
                                 study_users=write_users(tmp_path / "study.txt", [DID, *others])) as context,
    ):  # fmt: skip
        writer = CacheWriter(context, durable=False, hold_limits=HoldLimits(commits=3))
        backfill = BackgroundBackfill(writer, Fetcher(DidDocuments(pds.url), endpoints="any"), concurrency=1)
        backfill.enqueue([DID, *others])
        backfill.poll()
        assert writer.holds.dids() == [DID] and list(backfill.waiting) == others
        for i in range(4):
            writer.process_frame(
                commit(100 + i, DID, OpSpec("create", f"app.bsky.feed.post/3live{i}", post(f"{i}")))
            )
        assert DID not in writer.holds  # released at once: the backfill finds why at its next poll
        writer.flush()
        assert context.state.cursors.get() == 103
        assert len(tree(tmp_path / "cache")) == 4
        backfill.poll()
        status, _, reason, _ = context.state.backfills.recorded()[DID]
        assert status == "failed" and "passed the bound of 3 commits" in (reason or "")
        assert writer.holds.dids() == [others[0]]
        backfill.close()


def test_a_large_repository_is_written_in_slices_while_the_stream_flows(tmp_path: Path) -> None:
    """A poll writes one slice of a 5,000-record repository, not all of it; live frames of
    others are written and their cursor committed between slices; at the end every record is
    there and the held commit applied after them."""
    from syncstream.firehose.encode import OpSpec
    from syncstream.write.backfill import BackgroundBackfill
    from syncstream.write.context import setup_cache_write_system
    from syncstream.write.writer import CacheWriter
    from tests.helpers import commit, post

    big = "did:plc:bigbigbigbigbigbigbigbig"
    stranger = "did:plc:strangerstrangerstrange"
    with (
        LoopbackPds({big: build_repo(big, 5000)}, key=KEY) as pds,
        setup_cache_write_system(tmp_path / "cache", tmp_path / "s.sqlite",
                                 study_users=write_users(tmp_path / "study.txt", [big, stranger])) as context,
    ):  # fmt: skip
        writer = CacheWriter(context, durable=False)
        backfill = BackgroundBackfill(writer, Fetcher(DidDocuments(pds.url), endpoints="any"), concurrency=1,
                                      slice_seconds=0.0)  # fmt: skip
        backfill.enqueue([big])
        backfill.poll()
        job = backfill.running[big]
        writer.process_frame(commit(200, big, OpSpec("create", "app.bsky.feed.post/3zzlive", post("live"))))
        first = job.wait(60)  # the first batch, once fetched, verified and checked
        assert isinstance(first, list)
        job.queue.put(first)  # back where poll takes it from (the queue holds two)
        seq = 300
        while big in backfill.running and seq < 1000:
            before = sum(writer.files.values())
            backfill.poll()
            assert sum(writer.files.values()) - before <= 1000  # one batch (a like is 2 files)
            writer.process_frame(
                commit(seq, stranger, OpSpec("create", f"app.bsky.feed.post/3s{seq}", post()))
            )
            writer.flush()
            if big in backfill.running:
                assert context.state.cursors.get() == 199  # the held commit is not passed
            seq += 1
        assert seq > 305  # many slices, with frames between them
        writer.flush()
        assert context.state.cursors.get() == seq - 1
        assert context.state.backfills.recorded()[big][0] == "done"
        files = tree(tmp_path / "cache")
        # 2,500 posts, 2,500 likes (each also a like on the user's post), the live post
        assert sum(f"author_did={big}" in name for name in files) == 7501
