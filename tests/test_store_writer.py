"""One store, one writer: a second writer on a store, whatever its cache, is refused at once and
changes nothing; a store belongs to the cache it was made with, and moves with it only when
told (``write --cache-moved``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from syncstream.firehose.encode import OpSpec
from syncstream.store import StateStore
from tests.helpers import commit, post, wait_for, write_replay, write_users

STUDY = "did:plc:study000000000000000000000"


def frames(first: int, count: int) -> list[bytes]:
    return [
        commit(first + i, STUDY, OpSpec("create", f"app.bsky.feed.post/3s{first + i}", post(f"{i}")))
        for i in range(count)
    ]


def command(module: str, root: Path, cache: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        module,
        "--cache-dir",
        str(root / cache),
        "--state",
        str(root / "s.sqlite"),
        *extra,
    ]


def write(root: Path, cache: str, replay: list[bytes], *extra: str) -> list[str]:
    name = f"replay-{replay and len(replay)}-{cache}.bin"
    return command(
        "syncstream.write", root, cache, "-q", "--no-sync", "--flush-frames", "5",
        "--replay", str(write_replay(root / name, replay)),
        "--study-users", str(write_users(root / "study.txt", [STUDY])), *extra,
    )  # fmt: skip


def run(arguments: list[str], failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "SYNCSTREAM_FAILPOINTS"}
    if failpoint is not None:
        environment["SYNCSTREAM_FAILPOINTS"] = failpoint
    return subprocess.run(
        arguments, capture_output=True, text=True, env=environment, check=False, timeout=120
    )


def cursor(root: Path) -> int | None:
    with StateStore(root / "s.sqlite", create=False) as state:
        return state.cursors.get()


def stopped(process: subprocess.Popen[str]) -> bool:
    with open(f"/proc/{process.pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_second_writer_on_a_held_store_is_refused_at_once(tmp_path: Path) -> None:
    """A writer stopped mid-run holds its store: a second writer given the same --state and
    another --cache-dir exits 2 at once, makes no cache, moves no cursor; the first finishes."""
    assert run(write(tmp_path, "cache", frames(1, 5))).returncode == 0
    before = cursor(tmp_path)
    environment = {**os.environ, "SYNCSTREAM_FAILPOINTS": "writer/write.batch_sent:1:stop"}
    first = subprocess.Popen(
        write(tmp_path, "cache", frames(1, 20)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment,
    )  # fmt: skip
    try:
        wait_for(lambda: first.poll() is not None or stopped(first), "the first writer stopped")
        assert first.poll() is None, first.communicate()
        second = run(write(tmp_path, "other", frames(30, 5)))
        assert second.returncode == 2, second.stderr
        assert "held by another writer" in second.stderr
        assert not (tmp_path / "other").exists()
        assert cursor(tmp_path) == before
    finally:
        os.kill(first.pid, signal.SIGCONT)
        _, error = first.communicate(timeout=120)
    assert first.returncode == 0, error
    assert cursor(tmp_path) == 20


def test_a_store_refuses_another_cache_and_follows_its_own(tmp_path: Path) -> None:
    """A store made with one cache refuses another (the writer, the export and the purge: exit
    2, naming its cache, nothing made), and another store's cache; the cache moved whole
    (``mv``) is still its own, wherever it is."""
    assert run(write(tmp_path, "cache", frames(1, 5))).returncode == 0
    for arguments in (
        write(tmp_path, "other", frames(10, 5)),
        command("syncstream.export", tmp_path, "other", "-q", "--out", str(tmp_path / "out")),
        command("syncstream.purge", tmp_path, "other", "-q", "--did", STUDY),
    ):
        assert run(arguments).returncode == 2
        assert not (tmp_path / "other").exists()
        (tmp_path / "other").mkdir()  # (an export or a purge needs a cache to be given)
        refused = run(arguments)
        assert refused.returncode == 2, refused.stderr
        assert f"belongs to the cache {tmp_path / 'cache'}" in refused.stderr
        assert os.listdir(tmp_path / "other") == []
        assert not (tmp_path / "out").exists()
        (tmp_path / "other").rmdir()
    assert cursor(tmp_path) == 5
    (tmp_path / "cache").rename(tmp_path / "moved")
    assert run(write(tmp_path, "moved", frames(10, 5))).returncode == 0
    assert cursor(tmp_path) == 14
    exported = run(command("syncstream.export", tmp_path, "moved", "-q", "--out", str(tmp_path / "out")))
    assert exported.returncode == 0, exported.stderr
    another = tmp_path / "another"
    another.mkdir()
    (another / "cache").symlink_to(tmp_path / "moved")  # another store given this cache
    refused = run(write(another, "cache", frames(1, 5)))
    assert refused.returncode == 2 and "belongs to another state store" in refused.stderr, refused.stderr
    assert not (another / "s.sqlite").exists() or cursor(another) is None
