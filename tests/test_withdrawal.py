"""Withdrawal sticks: after a purge nothing the account authors is collected again, live or by
backfill, whatever it points at, until it is re-enrolled, and re-enrolment starts clean. An
account's status decides its purge as the Account spec says: deleted and taken-down accounts
are purged at the next export unless reactivated first; deactivated ones are kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncstream.export.__main__ import main as export_main
from syncstream.firehose.decode import Commit, RepoOp
from syncstream.firehose.encode import OpSpec, event_frame
from syncstream.purge.__main__ import main as purge_main
from syncstream.registry.records import BACKFILL
from syncstream.store import StateStore
from syncstream.write.__main__ import main as write_main
from syncstream.write.context import setup_cache_write_system
from syncstream.write.writer import CacheWriter
from tests.helpers import (
    TIME,
    commit,
    dataset_rows,
    follow,
    like,
    post,
    quote,
    repost,
    tree,
    write_replay,
    write_users,
)

A, B, FRIEND = "did:plc:alice", "did:plc:bob", "did:plc:friend"
PB = f"at://{B}/app.bsky.feed.post/3pb"
RECORD_DATASETS = [
    "study_user_activity/post",
    "study_user_activity/like",
    "study_user_activity/repost",
    "study_user_activity/like_on_user_post",
    "study_user_activity/reply_to_user_post",
    "study_user_activity/repost_on_user_post",
    "study_user_activity/quote_of_user_post",
    "scraped_user_social_network/follow",
    "in_network_user_activity/post",
    "population/account_event",
]


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "state.sqlite"), "-q"]


def write(root: Path, frames: list[bytes], *extra: str, study: list[str] | None = None) -> None:
    replay = write_replay(root / f"r{len(list(root.glob('r*.bin')))}.bin", frames)
    args = [*store(root), "--no-sync", "--replay", str(replay)]
    args += ["--study-users", str(write_users(root / "study.txt", study or [A, B]))]
    args += ["--in-network-users", str(write_users(root / "net.txt", [FRIEND]))]
    assert write_main([*args, *extra]) == 0


def export(root: Path, *extra: str) -> None:
    assert export_main([*store(root), "--out", str(root / "out"), *extra]) == 0


def purge(root: Path, did: str) -> None:
    assert purge_main([*store(root), "--out", str(root / "out"), f"--did={did}"]) == 0


def authored_by(root: Path, did: str) -> dict[str, int]:
    """Rows of ``did`` (as author, or as the account of an event) per dataset, all datasets."""
    found = {}
    for name in RECORD_DATASETS:
        count = sum(
            1 for row in dataset_rows(root / "out", name) if row.get("author_did", row.get("did")) == did
        )
        if count:
            found[name] = count
    return found


def reactions(first: int) -> list[bytes]:
    """A's activity that points at B, a remaining study user: a like, a reply, a repost and a
    quote of B's post, and a follow of B."""
    ops = [
        OpSpec("create", "app.bsky.feed.like/3la", like(PB)),
        OpSpec("create", "app.bsky.feed.post/3ra", post("a reply", parent=PB)),
        OpSpec("create", "app.bsky.feed.repost/3sa", repost(PB)),
        OpSpec("create", "app.bsky.feed.post/3qa", quote("a quote", PB)),
        OpSpec("create", "app.bsky.graph.follow/3fa", follow(B)),
        OpSpec("create", "app.bsky.feed.post/3pa", post("a post of her own")),
    ]
    return [commit(first + i, A, op) for i, op in enumerate(ops)]


@pytest.fixture
def withdrawn(tmp_path: Path) -> Path:
    """A and B study users, B's post, A's reactions to it exported; then A withdraws."""
    write(tmp_path, [commit(1, B, OpSpec("create", "app.bsky.feed.post/3pb", post("by bob"))), *reactions(2)])
    export(tmp_path)
    assert authored_by(tmp_path, A) == EVERY_REACTION
    purge(tmp_path, A)
    assert authored_by(tmp_path, A) == {}
    return tmp_path


def test_a_withdrawn_account_is_never_collected_again(withdrawn: Path) -> None:
    """After the purge, A's new likes, replies, reposts and quotes of B's post and A's follow
    of B are neither cached nor exported, though they point at a study user; B's rows stay."""
    before = {name: len(dataset_rows(withdrawn / "out", name)) for name in RECORD_DATASETS}
    write(withdrawn, reactions(100))
    assert tree(withdrawn / "cache") == set()
    export(withdrawn)
    assert authored_by(withdrawn, A) == {}
    assert {name: len(dataset_rows(withdrawn / "out", name)) for name in RECORD_DATASETS} == before
    assert before["study_user_activity/post"] == 1  # B's post


def test_a_withdrawn_account_is_not_collected_by_backfill(withdrawn: Path) -> None:
    """A backfilled repository of a withdrawn account writes nothing: the writer's routing
    passes every op of it over, whatever it points at, and counts them."""
    with setup_cache_write_system(withdrawn / "cache", withdrawn / "state.sqlite") as context:
        writer = CacheWriter(context, durable=False)
        ops = (RepoOp("create", "app.bsky.feed.like", "3lb", "bafyreiaaaa", like(PB)),)
        assert writer.apply_commit(Commit(None, A, "3mptbypluud2b", TIME, ops, source=BACKFILL)) == []
        writer.flush()
        assert writer.summary().rejections == {"withdrawn_account": 1}
    assert tree(withdrawn / "cache") == set()


def test_reenrolment_starts_clean(withdrawn: Path) -> None:
    """Re-enrolled, A's history comes back: its backfill is due again and records exported
    before the purge (now gone from the output) are exported again when seen again."""
    write(withdrawn, reactions(200), "--reenrol", A)
    with StateStore(withdrawn / "state.sqlite") as state:
        assert A not in state.population.purged()
        assert A not in state.backfills.recorded()
        assert state.backfills.due([A], 0.0) == [A]
    export(withdrawn)
    assert authored_by(withdrawn, A) == EVERY_REACTION


EVERY_REACTION = {  # what reactions() collects with A and B study users: A's and B's view
    "study_user_activity/post": 3,
    "study_user_activity/like": 1,
    "study_user_activity/like_on_user_post": 1,
    "study_user_activity/reply_to_user_post": 1,
    "study_user_activity/repost": 1,
    "study_user_activity/repost_on_user_post": 1,
    "study_user_activity/quote_of_user_post": 1,
    "scraped_user_social_network/follow": 2,
}


def test_reenrol_of_an_account_never_purged_keeps_its_history(tmp_path: Path) -> None:
    """--reenrol left in a unit file does not wipe the history of an account that was not
    purged: its backfill stays done and its exported rows are not exported again."""
    write(tmp_path, reactions(1))
    export(tmp_path)
    with StateStore(tmp_path / "state.sqlite") as state:
        state.backfills.record(A, rev="3mptbypluud2a", records=6)
        state.cursors.set(0)
    write(tmp_path, reactions(1), "--reenrol", A)  # the relay replays the same events
    export(tmp_path)
    with StateStore(tmp_path / "state.sqlite") as state:
        assert state.backfills.recorded()[A][0] == "done"
    assert authored_by(tmp_path, A) == EVERY_REACTION


def account(seq: int, did: str, *, active: bool, status: str | None = None) -> bytes:
    fields: dict[str, object] = {"active": active}
    if status is not None:
        fields["status"] = status
    return event_frame("account", seq=seq, did=did, time=TIME, **fields)


def purged(root: Path) -> list[tuple[tuple[str, ...], str]]:
    with StateStore(root / "state.sqlite") as state:
        return [(record.dids, record.reason) for record in state.purges.records()]


def test_reactivation_cancels_a_pending_deletion_purge(tmp_path: Path) -> None:
    """A deleted account that comes back before the next export is not purged: within one
    batch, or in a later run of the writer; its posts after the reactivation are exported."""
    write(tmp_path, [account(1, A, active=False, status="deleted"), account(2, A, active=True)])
    write(tmp_path, [account(3, B, active=False, status="deleted")])
    write(
        tmp_path,
        [account(4, B, active=True), commit(5, B, OpSpec("create", "app.bsky.feed.post/3n", post()))],
    )
    export(tmp_path)
    assert purged(tmp_path) == []
    assert authored_by(tmp_path, B) == {"study_user_activity/post": 1, "population/account_event": 2}
    assert authored_by(tmp_path, A) == {"population/account_event": 2}


@pytest.mark.parametrize(
    ("status", "purges"),
    [("deleted", True), ("takendown", True), ("deactivated", False), ("suspended", False)],
)
def test_which_statuses_purge(tmp_path: Path, status: str, purges: bool) -> None:
    """Deleted and taken-down accounts are purged at the next export; a deactivated account
    (also the state of a PDS migration) and a suspended one are kept."""
    write(
        tmp_path,
        [
            commit(1, A, OpSpec("create", "app.bsky.feed.post/3p", post())),
            account(2, A, active=False, status=status),
        ],
    )
    export(tmp_path)
    assert purged(tmp_path) == ([((A,), f"{status} account")] if purges else [])
    assert bool(authored_by(tmp_path, A)) is not purges


def test_the_purging_statuses_are_configurable(tmp_path: Path) -> None:
    """--purge-account-statuses chooses the statuses that purge; an unknown status is a usage
    error."""
    frames = [
        account(1, A, active=False, status="takendown"),
        account(2, B, active=False, status="deactivated"),
    ]
    write(tmp_path, frames, "--purge-account-statuses", "deleted,deactivated")
    export(tmp_path)
    assert purged(tmp_path) == [((B,), "deactivated account")]
    with pytest.raises(SystemExit) as usage:
        write(tmp_path, [], "--purge-account-statuses", "gone")
    assert usage.value.code == 2


def test_each_status_decision_is_counted(tmp_path: Path) -> None:
    """The writer's summary counts each decision: marked for purge, reactivated, kept."""
    with setup_cache_write_system(
        tmp_path / "cache", tmp_path / "state.sqlite", study_users=write_users(tmp_path / "s.txt", [A, B])
    ) as context:
        writer = CacheWriter(context, durable=False)
        frames = [
            account(1, A, active=False, status="deleted"),
            account(2, A, active=True),
            account(3, B, active=False, status="deactivated"),
            account(4, B, active=False, status="takendown"),
            account(5, FRIEND, active=False, status="deleted"),  # not of the population: no decision
        ]
        summary = writer.process_frames(frames)
        assert summary.accounts == {"marked_for_purge": 2, "reactivated": 1, "kept_inactive": 1}
        assert context.state.purges.pending() == {B: (4, "takendown account")}
