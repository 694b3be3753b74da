"""The chain of a verified account, kept in the state store: across a restart a commit that
follows on verifies, one that is stale is refused, one whose prevData is not the last root is a
desync; a held account's chain is written only once its commits are; a commit without prevData
is checked at its paths only (verified null); a rev too far in the future is refused; a #sync
is verified and moves the chain."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from unittest.mock import patch

import libipld

from syncstream.export.__main__ import main as export_main
from syncstream.firehose.encode import OpSpec, cid_for, encode_car, encode_commit_frame, event_frame
from syncstream.firehose.mst import Tree
from syncstream.servers.keys import REHEARSAL_SEED, SigningKey, sign_commit
from syncstream.servers.pds import LoopbackPds
from syncstream.store import StateStore
from syncstream.store.chains import Link
from syncstream.verify import DidDocuments
from syncstream.write import chains as chains_module
from syncstream.write.authentic import StreamVerifier
from syncstream.write.chains import ChainView
from syncstream.write.context import setup_cache_write_system
from syncstream.write.writer import CacheWriter
from tests.forgery import tid, with_body
from tests.helpers import TIME, post, tree, write_users
from tests.tables import table_rows

KEY = SigningKey(REHEARSAL_SEED)
DID = "did:plc:studystudystudystudystu"
BASE = 1_783_175_887


def signed(seq: int, n: int, rkey: str, repo: dict[str, bytes], since: int | None) -> bytes:
    return encode_commit_frame(
        seq=seq, repo=DID, rev=tid(BASE + n), time=TIME, since=None if since is None else tid(BASE + since),
        ops=[OpSpec("create", f"app.bsky.feed.post/{rkey}", post(rkey))], sign=partial(sign_commit, key=KEY),
        before=repo,
    )  # fmt: skip


def run(root: Path, frames: list[bytes], plc: str) -> tuple[dict[str, int], CacheWriter]:
    """One writer's run over ``frames`` (a process's life): its verification counts."""
    with setup_cache_write_system(root / "cache", root / "s.sqlite",
                                  study_users=write_users(root / "s.txt", [DID])) as context:  # fmt: skip
        verifier = StreamVerifier(DidDocuments(plc), "study")
        writer = CacheWriter(context, durable=False, verifier=verifier)
        writer.process_frames(frames)
        return verifier.counts, writer


def test_the_chain_is_kept_across_a_restart(tmp_path: Path) -> None:
    repo: dict[str, bytes] = {}
    first = [signed(1, 1, "a", repo, None), signed(2, 2, "b", repo, 1)]
    stale = signed(3, 2, "again", dict(repo), 1)
    follows = signed(4, 3, "c", repo, 2)
    elsewhere = signed(5, 4, "d", {"app.bsky.feed.post/zz": bytes(36)}, 3)  # since right, prevData not
    with LoopbackPds({DID: b""}, key=KEY) as plc:
        assert run(tmp_path, first, plc.url)[0] == {"verified": 2}
        counts, _ = run(tmp_path, [stale, follows, elsewhere], plc.url)
    assert counts == {"verified": 2, "stale_rev": 1, "desynchronized": 1}
    names = tree(tmp_path / "cache")
    assert {n.rsplit("=", 1)[1] for n in names if "/post/" in n} == {"a.json", "b.json", "c.json", "d.json"}
    assert f"population/account_event/desync/did={DID}_seq=5.json" in names
    out = tmp_path / "out"
    assert export_main(["--cache-dir", str(tmp_path / "cache"), "--state", str(tmp_path / "s.sqlite"),
                        "--out", str(out), "-q"]) == 0  # fmt: skip
    events = [r for r in table_rows(out, "population/account_event") if r["event"] == "desync"]
    assert [(e["did"], e["seq"], e["status"], e["rev"]) for e in events] == [
        (DID, 5, "prev_data_mismatch", tid(BASE + 4))]  # fmt: skip
    with StateStore(tmp_path / "s.sqlite") as state:
        assert state.backfills.recorded()[DID][0] == "pending"
        assert state.chains.get(DID) == (tid(BASE + 4), state.chains.get(DID).data)  # type: ignore[union-attr]


def test_a_held_accounts_chain_waits_for_its_commits(tmp_path: Path) -> None:
    """While a DID's commits are held (its backfill runs), its verified link is not committed:
    a crash replays them from the cursor, and they must still follow on."""
    repo: dict[str, bytes] = {}
    with LoopbackPds({DID: b""}, key=KEY) as plc, setup_cache_write_system(
        tmp_path / "cache", tmp_path / "s.sqlite", study_users=write_users(tmp_path / "s.txt", [DID])
    ) as context:  # fmt: skip
        writer = CacheWriter(context, durable=False, verifier=StreamVerifier(DidDocuments(plc.url), "study"))
        writer.hold(DID)
        writer.process_frames([signed(1, 1, "a", repo, None)])
        assert context.state.chains.get(DID) is None
        writer.release(DID)
        writer.flush()
        assert context.state.chains.get(DID) is not None
        assert context.state.chains.get(DID).rev == tid(BASE + 1)  # type: ignore[union-attr]


def test_a_commit_without_prev_data_is_checked_at_its_paths_only(tmp_path: Path) -> None:
    frame = with_body(signed(1, 1, "a", {}, None), prevData=None)
    with LoopbackPds({DID: b""}, key=KEY) as plc:
        counts, writer = run(tmp_path, [frame], plc.url)
    assert counts == {"paths_only": 1}
    assert writer.files  # written, with verified null
    written = next(p for p in (tmp_path / "cache").rglob("*.json") if "/post/" in str(p))
    assert b'"verified":null' in written.read_bytes()


def test_a_rev_too_far_in_the_future_is_refused(tmp_path: Path) -> None:
    ahead = int(time.time()) + 600 - BASE
    near = int(time.time()) + 60 - BASE
    with LoopbackPds({DID: b""}, key=KEY) as plc:
        counts, writer = run(
            tmp_path, [signed(1, ahead, "a", {}, None), signed(2, near, "b", {}, None)], plc.url
        )
    assert counts == {"future_rev": 1, "verified": 1}
    assert writer.rejections["unverified_commit"] == 1


def sync_frame(seq: int, n: int, key: SigningKey) -> bytes:
    """A ``#sync`` whose CAR holds the repository's commit (an empty tree), signed by ``key``."""
    commit = sign_commit({"did": DID, "rev": tid(BASE + n), "version": 3, "data": Tree.empty().root(), "prev": None},
                         key)  # fmt: skip
    block = libipld.encode_dag_cbor(commit)
    car = encode_car([cid_for(block)], [(cid_for(block), block)])
    return event_frame("sync", seq=seq, did=DID, time=TIME, rev=tid(BASE + n), blocks=car)


def test_a_sync_is_verified_and_moves_the_chain(tmp_path: Path) -> None:
    """A #sync signed by the account's key is verified, starts the chain at its rev and asks for
    a fresh backfill; one signed by another key is refused."""
    with LoopbackPds({DID: b""}, key=KEY) as plc:
        counts, _ = run(tmp_path, [sync_frame(1, 1, KEY), sync_frame(2, 2, SigningKey(7))], plc.url)
    assert counts == {"verified": 1, "bad_signature": 1}
    with StateStore(tmp_path / "s.sqlite") as state:
        assert state.chains.get(DID) == (tid(BASE + 1), Tree.empty().root())
        assert state.backfills.recorded()[DID][0] == "pending"


def test_a_view_asks_the_store_only_for_what_it_may_hold(tmp_path: Path) -> None:
    """A view that has seen the store without chains (at its start, or having forgotten them)
    and kept every link since does not ask it for a DID it does not know; one over a store that
    holds links, or that had to drop what it knew, does."""
    other = "did:plc:otherotherotherotherot"
    with StateStore(tmp_path / "s.sqlite") as state:
        asked: list[str] = []
        state.chains._db.set_trace_callback(lambda sql: asked.append(sql) if "FROM chains" in sql else None)
        view = ChainView(state)
        asked.clear()  # the one look at the start
        assert view.get(DID) is None
        view.advance(other, Link(tid(BASE + 1), bytes(36)))
        state.commit(1, chains=view.take(()))
        assert view.get(other) == (tid(BASE + 1), bytes(36))
        assert asked == []
        fresh = ChainView(state)  # the store holds a link now: it is asked for what is not known
        asked.clear()
        assert fresh.get(other) == (tid(BASE + 1), bytes(36))
        assert fresh.get(DID) is None
        assert len(asked) == 2
        fresh.forget()
        asked.clear()
        assert fresh.get(other) is None
        assert asked == []
        fresh.advance(other, Link(tid(BASE + 2), None))
        state.commit(2, chains=fresh.take(()))
        with patch.object(chains_module, "_KNOWN", 1):  # the bound drops what the view knew
            assert fresh.get(DID) is None
            assert fresh.get(other) == (tid(BASE + 2), None)  # so the store is asked again
        assert len(asked) == 1
