"""The membership record: each account's spells in the population, by role, from the first seq
processed with it in to the last, and how it came in and went out; a purge keeps counts only."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from syncstream.firehose.encode import OpSpec
from syncstream.lake.study_record import MEMBERSHIP, write_study_record
from syncstream.purge.protocol import purge_accounts
from syncstream.registry.builtin import HANDLERS
from syncstream.store import StateStore, UserKind
from syncstream.write.context import setup_cache_write_system
from syncstream.write.writer import CacheWriter
from tests.helpers import commit, follow, post, write_users
from tests.tables import stray_files, table_rows

STUDY = "did:plc:53iucmf5ldftgqyf2ac7hmhd"
SECOND = "did:plc:z72i7hdynmk6r22z27h6tvur"
FOLLOWED = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"


def frame(seq: int, *ops: OpSpec) -> bytes:
    return commit(seq, STUDY, *(ops or (OpSpec("create", f"app.bsky.feed.post/3p{seq}", post(f"{seq}")),)))


def writer_for(root: Path, study: Iterable[str], **options: object) -> tuple[object, CacheWriter]:
    users = write_users(root / "study.txt", study)
    reenrol = options.pop("reenrol", ())
    context = setup_cache_write_system(root / "cache", root / "s.sqlite", study_users=users, reenrol=reenrol)  # type: ignore[arg-type]
    return context, CacheWriter(context, durable=False, flush_frames=1000, **options)  # type: ignore[arg-type]


def run(root: Path, study: Iterable[str], frames: Iterable[bytes], **options: object) -> None:
    context, writer = writer_for(root, study, **options)
    with context:  # type: ignore[attr-defined]
        writer.process_frames(frames)


def spells(root: Path) -> list[tuple[str, str, int, int | None, str, str | None]]:
    with StateStore(root / "s.sqlite") as state:
        return [(s.did, s.role, s.from_seq, s.to_seq, s.how, s.left_how) for s in state.membership.spells()]


def test_the_users_files_accounts_are_in_from_the_first_seq_processed(tmp_path: Path) -> None:
    """A start opens a spell for each study user at the first seq the writer processes; a
    restart with the same file carries the spells on."""
    run(tmp_path, [STUDY, SECOND], [frame(10), frame(11)])
    run(tmp_path, [STUDY, SECOND], [frame(12)])
    assert sorted(spells(tmp_path)) == [
        (STUDY, "study", 10, None, "users file", None),
        (SECOND, "study", 10, None, "users file", None),
    ]


def test_a_restart_without_an_account_closes_its_spell_at_the_stored_cursor(tmp_path: Path) -> None:
    """The user file a writer starts with leaves an account out: its spell ends at the last
    seq the previous run stored; the account added opens at the new run's first seq."""
    run(tmp_path, [STUDY, SECOND], [frame(10), frame(11)])
    run(tmp_path, [STUDY, FOLLOWED], [frame(12)])
    assert sorted(spells(tmp_path)) == [
        (STUDY, "study", 10, None, "users file", None),
        (FOLLOWED, "study", 12, None, "users file", None),
        (SECOND, "study", 10, 11, "users file", "users file"),
    ]


def test_a_sighup_reload_closes_and_opens_spells_between_two_frames(tmp_path: Path) -> None:
    """Accounts a reload removes were in up to the last frame processed; those it adds are in
    from the next one."""
    context, writer = writer_for(tmp_path, [STUDY, SECOND])
    with context:  # type: ignore[attr-defined]
        writer.process_frame(frame(10))
        writer.process_frame(frame(11))
        writer.context.state.population.replace(UserKind.STUDY, [STUDY, FOLLOWED])
        writer.reload_population()
        writer.process_frame(frame(12))
        writer.flush()
    assert sorted(spells(tmp_path)) == [
        (STUDY, "study", 10, None, "users file", None),
        (FOLLOWED, "study", 12, None, "sighup", None),
        (SECOND, "study", 10, 11, "users file", "sighup"),
    ]


def test_a_tracked_follow_opens_an_in_network_spell_and_its_delete_closes_it(tmp_path: Path) -> None:
    """With --track-follows, a study user's follow puts the followee in-network from the next
    frame on; the follow's delete takes it out after the frame that deletes it."""
    follows = [
        frame(10),
        frame(11, OpSpec("create", "app.bsky.graph.follow/3f1", follow(FOLLOWED))),
        frame(12),
        frame(13, OpSpec("delete", "app.bsky.graph.follow/3f1")),
        frame(14),
    ]
    run(tmp_path, [STUDY], follows, track_follows=True)
    assert sorted(spells(tmp_path)) == [
        (STUDY, "study", 10, None, "users file", None),
        (FOLLOWED, "in_network", 12, 13, "track_follows", "track_follows"),
    ]


def test_a_purge_keeps_only_a_count_and_a_reenrolment_opens_a_new_spell(tmp_path: Path) -> None:
    """A purge deletes the account's spells from the state and the table (no file under the
    table holds its DID) and leaves one row without a DID; --reenrol brings it back in."""
    run(tmp_path, [STUDY, SECOND], [frame(10), frame(11)])
    out = tmp_path / "out"
    with StateStore(tmp_path / "s.sqlite") as state:
        # as an export records its output before its first write there: the purge goes by it
        state.catalog.record_output(str(out), "delta", state.exports.store_id(), time.time())
        assert write_study_record(str(out), state) == 2
        (done,) = purge_accounts(str(tmp_path / "cache"), state, None, HANDLERS, [SECOND], out=str(out))
        assert done.dids == (SECOND,)
        assert [(w.role, w.reason, w.accounts) for w in state.membership.withdrawals()] == [
            ("study", "withdrawal", 1)
        ]
    left = table_rows(out, MEMBERSHIP)
    assert sorted((r["did"] or "", r["role"], r["left_how"]) for r in left) == [
        ("", "study", "withdrawal"),
        (STUDY, "study", None),
    ]
    assert not [p for p in (out / MEMBERSHIP).rglob("*") if p.is_file() and SECOND.encode() in p.read_bytes()]
    assert stray_files(out) == []
    run(tmp_path, [STUDY, SECOND], [frame(12)], reenrol=[SECOND])
    assert sorted(spells(tmp_path)) == [
        (STUDY, "study", 10, None, "users file", None),
        (SECOND, "study", 12, None, "reenrol", None),
    ]
