"""``python -m syncstream.write``: the replay command end to end, on real and hostile frames."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from syncstream.cache import WriterLock
from syncstream.firehose.encode import OpSpec, error_frame, info_frame
from syncstream.registry.records import decode_record
from syncstream.store import StateStore
from syncstream.write.__main__ import main
from tests.helpers import (
    CORPUS,
    ROOT,
    all_files,
    commit,
    corpus_frames,
    follow,
    jetstream_events,
    like,
    post,
    tree,
    write_replay,
    write_users,
)
from tests.oracle import expected_tree, jetstream_to_events

SAMPLE = ROOT / "syncstream" / "data"


def read_dids(path: Path) -> set[str]:
    return {line.split("#")[0].strip() for line in path.read_text().splitlines()} - {""}


def run(tmp_path: Path, replay: Path, study: Path, in_network: Path | None = None) -> int:
    args = ["--cache-dir", str(tmp_path / "cache"), "--state", str(tmp_path / "state.sqlite"), "-q"]
    args += ["--study-users", str(study), "--replay", str(replay), "--no-sync"]
    if in_network is not None:
        args += ["--in-network-users", str(in_network)]
    return main(args)


def test_corpus_tree_equals_what_the_routing_table_implies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real frames with the sample population give exactly the oracle's tree from Jetstream's decode."""
    study_file, network_file = SAMPLE / "sample_study_users.txt", SAMPLE / "sample_in_network_users.txt"
    assert run(tmp_path, CORPUS / "frames.bin.zst", study_file, network_file) == 0
    expected = expected_tree(
        jetstream_to_events(jetstream_events()), read_dids(study_file), read_dids(network_file)
    )
    assert len(expected) == 15
    assert tree(tmp_path / "cache") == expected
    out = capsys.readouterr().out
    assert "frames: 150" in out and "commit: 148" in out and "identity: 1" in out
    assert "  reply_to_user_post: 3\n" in out
    assert "cursor: 31527015471" in out


def test_cache_files_hold_the_full_record_and_metadata(tmp_path: Path) -> None:
    """A cached like carries uri, cid, seq, rev, times, nesting and Jetstream's record."""
    assert run(tmp_path, CORPUS / "frames.bin.zst", SAMPLE / "sample_study_users.txt") == 0
    [path] = (tmp_path / "cache/study_user_activity/create/like_on_user_post").rglob("*.json")
    record = decode_record(path.read_bytes())
    [event] = [
        e for e in jetstream_events() if e["kind"] == "commit" and e["commit"].get("rkey") == record.rkey
    ]
    assert record.uri == f"at://{event['did']}/app.bsky.feed.like/{record.rkey}"
    assert (record.cid, record.record) == (event["commit"]["cid"], event["commit"]["record"])
    assert (record.seq, record.rev, record.event_time) == (
        31527015322,
        event["commit"]["rev"],
        "2026-07-04T14:38:07.517Z",
    )
    assert record.nested_key == path.parent.name == "3mpsjbtci2c2o"
    assert record.synctimestamp.endswith("Z")


def test_rerun_resumes_after_the_cursor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second run of the same replay skips every frame at or below the stored cursor."""
    study = SAMPLE / "sample_study_users.txt"
    assert run(tmp_path, CORPUS / "frames.bin.zst", study) == 0
    before = {p: p.stat().st_mtime_ns for p in all_files(tmp_path / "cache")}
    capsys.readouterr()
    assert run(tmp_path, CORPUS / "frames.bin.zst", study) == 0
    out = capsys.readouterr().out
    assert "skipped at or below the stored cursor: 150" in out
    assert {p: p.stat().st_mtime_ns for p in all_files(tmp_path / "cache")} == before


def test_hostile_frames_are_rejected_and_nothing_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Traversal rkeys, subjects and DIDs are counted as rejections; no file lands outside the cache."""
    study = "did:plc:study"
    frames = [
        commit(1, study, OpSpec("create", "app.bsky.feed.post/..", post())),
        commit(
            2,
            study,
            OpSpec(
                "create", "app.bsky.feed.like/3l", like("at://did:plc:x/app.bsky.feed.post/../../../escape")
            ),
        ),
        commit(
            3,
            "did:plc:x",
            OpSpec("create", "app.bsky.feed.like/3l", like(f"at://{study}/app.bsky.feed.post/..")),
        ),
        commit(4, study, OpSpec("create", "app.bsky.graph.follow/3f", follow("../../../escape"))),
        commit(5, study, OpSpec("create", "app.bsky.graph.follow/3g", follow("not a did"))),
        commit(
            6,
            "did:plc:x",
            OpSpec("create", "app.bsky.feed.post/3p", post(parent=f"at://{study}/app.bsky.feed.post/a/b")),
        ),
        commit(7, study, OpSpec("create", "app.bsky.feed.post/3ok", post())),
        error_frame("ConsumerTooSlow"),
        info_frame("OutdatedCursor"),
        b"\x00garbage",
    ]
    cache_dir = tmp_path / "nest" / "cache"
    args = ["--cache-dir", str(cache_dir), "--state", str(tmp_path / "s.sqlite"), "--no-sync"]
    args += ["--study-users", str(write_users(tmp_path / "study.txt", [study]))]
    assert main([*args, "--replay", str(write_replay(tmp_path / "hostile.bin", frames))]) == 0
    assert tree(cache_dir) == {f"study_user_activity/create/post/author_did={study}_post_uri_suffix=3ok.json"}
    outside = {p for p in all_files(tmp_path) if cache_dir not in p.parents}
    assert (
        {p.name for p in outside}
        == {"study.txt", "hostile.bin", "s.sqlite", "s.sqlite-wal", "s.sqlite-shm", "s.sqlite.lock"}
        & {p.name for p in outside}
        == {p.name for p in outside}
    )
    out = capsys.readouterr().out
    for line in [
        "invalid_rkey: 1",
        "invalid_nested_key:like: 1",
        "invalid_nested_key:like_on_user_post: 1",
        "invalid_subject_did:follow: 2",
        "invalid_nested_key:reply_to_user_post: 1",
        "error: 1",
        "info: 1",
        "undecodable: 1",
    ]:
        assert line in out


def test_truncated_replay_keeps_what_came_before(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A replay cut inside its last frame writes every whole frame, reports the cut and exits 1."""
    path = write_replay(tmp_path / "cut.bin", corpus_frames())
    path.write_bytes(path.read_bytes()[:-100])
    assert run(tmp_path, path, SAMPLE / "sample_study_users.txt") == 1
    out, err = capsys.readouterr()
    assert "truncated: 1" in out and "cursor: 31527015470" in out
    assert err.strip().splitlines()[-1].startswith(f"error: {path}: replay ends inside a frame")


def test_missing_replay_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A replay path that does not exist exits 2 with one line on stderr."""
    assert run(tmp_path, tmp_path / "missing.bin", SAMPLE / "sample_study_users.txt") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: replay file not found: {tmp_path / 'missing.bin'}"]


def test_invalid_user_file_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad DID in a user file exits 2 naming file and line, and writes nothing."""
    users = tmp_path / "study.txt"
    users.write_text("did:plc:ok\nbogus\n")
    assert run(tmp_path, CORPUS / "frames.bin.zst", users) == 2
    assert f"{users}:2: not a valid DID: 'bogus'" in capsys.readouterr().err
    assert tree(tmp_path / "cache") == set()


def test_corrupt_zstd_replay_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A zstd replay whose bytes are damaged exits 2 with a message."""
    raw = bytearray((CORPUS / "frames.bin.zst").read_bytes())
    raw[100:4000] = bytes(3900)
    path = tmp_path / "bad.bin.zst"
    path.write_bytes(bytes(raw))
    assert run(tmp_path, path, SAMPLE / "sample_study_users.txt") == 2
    assert "error: cannot read" in capsys.readouterr().err


def test_refuses_while_another_writer_holds_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two writers on one cache: the second exits 2."""
    with WriterLock(str(tmp_path / "cache")):
        assert run(tmp_path, CORPUS / "frames.bin.zst", SAMPLE / "sample_study_users.txt") == 2
    assert "held by a running writer" in capsys.readouterr().err


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown options and nonsense values are usage errors."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--no-such-option"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--flush-frames", "0"])
    assert exit_info.value.code == 2


def test_help_explains_every_option() -> None:
    """--help, run as a real command, names each option."""
    result = subprocess.run(
        [sys.executable, "-m", "syncstream.write", "--help"], capture_output=True, text=True, check=True
    )
    for option in [
        "--cache-dir",
        "--state",
        "--study-users",
        "--in-network-users",
        "--replay",
        "--flush-frames",
    ]:
        assert option in result.stdout


def test_default_run_uses_the_bundled_sample(tmp_path: Path) -> None:
    """With no options the command replays the bundled sample into ./syncstream-cache."""
    result = subprocess.run(
        [sys.executable, "-m", "syncstream.write", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "frames: 150" in result.stdout
    assert len(tree(tmp_path / "syncstream-cache")) == 15
    with StateStore(tmp_path / "syncstream-state.sqlite") as state:
        assert state.cursors.get() == 31527015471
