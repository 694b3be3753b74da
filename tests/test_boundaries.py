"""The cache root is a boundary (no link inside it followed), bad input ends in one error line and
a non-zero exit, and exported keys of kept files are never forgotten."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from syncstream.cache import reset_tree
from syncstream.export.__main__ import main as export_main
from syncstream.firehose.encode import OpSpec
from syncstream.lake.storage import storage_for
from syncstream.lake.storage_options import StorageOptions
from syncstream.registry.builtin import HANDLERS
from syncstream.store import StateStore
from syncstream.write.__main__ import main as write_main
from tests.helpers import all_files, commit, export_args, exported, like, post, tree, write_args

STUDY = "did:plc:studystudystudystudystu"
POSTS = "study_user_activity/create/post"


def posts(*numbers: int) -> list[bytes]:
    return [commit(i, STUDY, OpSpec("create", f"app.bsky.feed.post/p{i}", post())) for i in numbers]


def test_a_linked_handler_directory_stops_the_writer_before_any_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A handler directory that is a link: exit 2 naming it, nothing written through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "cache" / "study_user_activity" / "create").mkdir(parents=True)
    (tmp_path / "cache" / POSTS).symlink_to(outside)
    assert write_main(write_args(tmp_path, posts(1, 2), [STUDY])) == 2
    assert "is a symbolic link inside the cache" in capsys.readouterr().err
    assert list(outside.iterdir()) == []


def test_a_linked_nested_directory_is_refused_per_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A nested directory that is a link: those writes are counted and passed over, never
    written through it; the others land."""
    outside = tmp_path / "outside"
    outside.mkdir()
    nested = tmp_path / "cache" / "study_user_activity/create/like/p1"
    nested.parent.mkdir(parents=True)
    nested.symlink_to(outside)
    frames = [
        *posts(1),
        commit(
            2, STUDY, OpSpec("create", "app.bsky.feed.like/l2", like(f"at://{STUDY}/app.bsky.feed.post/p1"))
        ),
    ]
    for extra in ([], ["--inline-writes"]):
        assert write_main([*write_args(tmp_path, frames, [STUDY]), "--cursor", "0", *extra]) == 0
        assert "symlink_in_cache: 1" in capsys.readouterr().out
        assert list(outside.iterdir()) == []
        assert f"{POSTS}/author_did={STUDY}_post_uri_suffix=p1.json" in tree(tmp_path / "cache")


def test_the_export_never_follows_a_link_inside_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Linked handler directories, nested directories and files are left alone: what they point
    to is never read, exported, moved or deleted; the real files are exported."""
    assert write_main(write_args(tmp_path, posts(1, 2), [STUDY])) == 0
    outside = tmp_path / "outside"
    (outside / "nested").mkdir(parents=True)
    victim = outside / f"author_did={STUDY}_post_uri_suffix=x9.json"
    real = next((tmp_path / "cache" / POSTS).iterdir())
    victim.write_bytes(real.read_bytes().replace(b"/p1", b"/x9").replace(b"/p2", b"/x9"))
    (outside / "nested" / victim.name).write_bytes(victim.read_bytes())
    before = {p: p.read_bytes() for p in all_files(outside)}
    cache = tmp_path / "cache"
    (cache / POSTS / f"author_did={STUDY}_post_uri_suffix=link.json").symlink_to(victim)
    (cache / "study_user_activity/create/like").mkdir(parents=True, exist_ok=True)
    (cache / "study_user_activity/create/like/p9").symlink_to(outside / "nested")
    (cache / "in_network_user_activity/create/post").rmdir()
    (cache / "in_network_user_activity/create/post").symlink_to(outside)
    assert export_main(export_args(tmp_path)) == 0
    assert "symbolic links left alone: 1" in capsys.readouterr().out  # the linked handler directory
    assert [row[1].rsplit("/", 1)[1] for row in exported(tmp_path)] == ["p1", "p2"]
    assert {p: p.read_bytes() for p in all_files(outside)} == before


def test_a_reset_removes_no_file(tmp_path: Path) -> None:
    """--clear-cache's reset removes empty directories and links, and no file: what the export
    set aside, and a file it did not export, stay (and are named)."""
    (tmp_path / ".set-aside").mkdir(parents=True)
    (tmp_path / ".set-aside" / "kept.json").write_text("{}")
    (tmp_path / POSTS).mkdir(parents=True)
    (tmp_path / POSTS / "x.json").write_text("{}")
    (tmp_path / "study_user_activity/create/like/3a").mkdir(parents=True)
    (tmp_path / "elsewhere").symlink_to(tmp_path / ".set-aside")
    kept = reset_tree(str(tmp_path), (config.directory for config in HANDLERS.values()))
    assert kept == [f"{POSTS}/x.json"]
    assert tree(tmp_path) == {".set-aside/kept.json", f"{POSTS}/x.json"}
    assert not (tmp_path / "study_user_activity/create/like/3a").exists()
    assert not (tmp_path / "elsewhere").is_symlink()
    assert (tmp_path / "study_user_activity/create/like").is_dir()


def test_an_empty_population_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With no study and no in-network user the writer exits 2 before reading a frame, and the
    cursor stays unset; --allow-empty-population runs it anyway."""
    args = write_args(tmp_path, posts(1, 2), [])
    assert write_main(args) == 2
    assert capsys.readouterr().err.startswith("error: the study and in-network sets are both empty")
    with StateStore(tmp_path / "s.sqlite") as state:
        assert state.cursors.get() is None
    assert write_main([*args, "--allow-empty-population"]) == 0
    with StateStore(tmp_path / "s.sqlite") as state:
        assert state.cursors.get() == 2


@pytest.mark.parametrize("content", [os.urandom(4096), b"\x10\x00\x00\x00" + b"\xff" * 16])
def test_a_replay_of_random_bytes_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    """Bytes that are no replay (cut, or framed but undecodable) end in one error line, exit 1."""
    args = write_args(tmp_path, [], [STUDY])
    Path(args[args.index("--replay") + 1]).write_bytes(content)
    assert write_main(args) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("kind", ["text", "other-sqlite", "directory"])
def test_a_state_file_that_is_no_store_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """Both commands exit 2 with one ``error:`` line naming a state file that is not a
    syncstream store, and change nothing in it."""
    state = tmp_path / "s.sqlite"
    if kind == "text":
        state.write_text("not a database at all, just some text that is long enough" * 20)
    elif kind == "other-sqlite":
        with sqlite3.connect(state) as db:
            db.execute("CREATE TABLE invoices (id INTEGER)")
    else:
        state.mkdir()
    before = state.read_bytes() if state.is_file() else None
    assert write_main(write_args(tmp_path, posts(1), [STUDY])) == 2
    assert not (tmp_path / "cache").exists()  # refused before the cache is made
    (tmp_path / "cache").mkdir()
    assert export_main(export_args(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") and str(state) in line for line in err)
    assert (state.read_bytes() if state.is_file() else None) == before


def test_keep_cache_never_makes_a_later_export_emit_a_row_twice(tmp_path: Path) -> None:
    """Keys exported with --keep-cache outlive the dedup window; the export that finally
    removes the files drops them as exported, and the keys are forgotten only after that."""
    assert write_main(write_args(tmp_path, posts(1, 2, 3), [STUDY])) == 0
    assert export_main(export_args(tmp_path, "--keep-cache", "--dedup-window-hours", "0")) == 0
    time.sleep(0.01)
    for _ in range(2):
        assert export_main(export_args(tmp_path, "--keep-cache", "--dedup-window-hours", "0")) == 0
    assert len(exported(tmp_path)) == 3 and len(tree(tmp_path / "cache")) == 3
    assert export_main(export_args(tmp_path, "--dedup-window-hours", "0")) == 0
    assert len(exported(tmp_path)) == 3 and tree(tmp_path / "cache") == set()


def test_object_storage_gets_timeouts(tmp_path: Path) -> None:
    """An s3:// output gets the connect and request timeouts; one the URI cannot carry."""
    options = StorageOptions(connect_timeout=3.0, request_timeout=7.0)
    storage = storage_for(
        "s3://bucket/prefix?region=us-east-1&endpoint_override=127.0.0.1:9&scheme=http", options
    )
    assert isinstance(storage.filesystem, pafs.S3FileSystem)
    settings = storage.filesystem.__reduce__()[1][0]
    assert (settings["connect_timeout"], settings["request_timeout"]) == (3.0, 7.0)
    assert settings["endpoint_override"] == "127.0.0.1:9" and storage.base == "bucket/prefix"
    assert StorageOptions.from_args(options.to_args()) == options


def test_idle_exit_with_no_frame_ever_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A relay where nothing listens: each failed connection is logged with its reason, and
    --idle-exit ends the run with exit 1 and one error line."""
    import socket

    with socket.socket() as probe:  # a port with nothing behind it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = write_args(tmp_path, [], [STUDY])
    args = args[: args.index("--replay")] + args[args.index("--replay") + 2 :]
    code = write_main(
        [*args, "--relay", f"ws://127.0.0.1:{port}", "--idle-exit", "1.5", "--reconnect-delay", "0.1"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert (
        f"relay connection to ws://127.0.0.1:{port}/xrpc/com.atproto.sync.subscribeRepos: Connection"
        in caplog.text
    )
    assert err.strip().splitlines()[-1].startswith(f"error: no frame arrived from ws://127.0.0.1:{port}")
