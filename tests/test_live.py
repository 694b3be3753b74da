"""The live firehose: the real atproto client against the loopback relay, for each fault."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syncstream.firehose.decode import decode_frame
from syncstream.firehose.encode import OpSpec, with_seq
from syncstream.firehose.replay import iter_replay
from syncstream.servers.relay import Fault, LoopbackRelay, ReplayRelay, parse_fault
from syncstream.store import StateStore, relay_cursor
from syncstream.write.__main__ import main
from syncstream.write.live import relay_base_uri
from tests.helpers import (
    ROOT,
    commit,
    corpus_frames,
    follow,
    free_port,
    get,
    post,
    store_args,
    tree,
    wait_for,
    write_replay,
    write_users,
)

SAMPLE = ROOT / "syncstream" / "data"
FIRST, LAST = 31527015322, 31527015471


def users() -> list[str]:
    return [
        "--study-users",
        str(SAMPLE / "sample_study_users.txt"),
        "--in-network-users",
        str(SAMPLE / "sample_in_network_users.txt"),
    ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The cache tree of a plain replay of the corpus: what every faulty live run must end with."""
    root = tmp_path_factory.mktemp("uninterrupted")
    args = [
        "--cache-dir",
        str(root / "cache"),
        "--state",
        str(root / "s.sqlite"),
        "-q",
        "--no-sync",
        *users(),
    ]
    assert main([*args, "--replay", str(write_replay(root / "r.bin", corpus_frames()))]) == 0
    return tree(root / "cache")


def live(tmp_path: Path, url: str, *extra: str) -> int:
    args = ["--cache-dir", str(tmp_path / "cache"), "--state", str(tmp_path / "s.sqlite"), "-q", "--no-sync"]
    # A fixed receive timeout keeps the dials exactly those the faults cause (with --idle-exit
    # alone, a quiet relay is redialled at half of it, which one test below checks).
    args += [
        *users(),
        "--relay",
        url,
        "--idle-exit",
        "1.5",
        "--reconnect-delay",
        "0.05",
        "--recv-timeout",
        "30",
        "--verify",  # no directory to ask: these tests are about the stream, not its authors' keys
        "none",
    ]
    args += extra
    return main(args)


def stored_cursor(tmp_path: Path, url: str) -> int | None:
    """The cursor the writer stored for this relay (cursors are kept per relay host)."""
    with StateStore(tmp_path / "s.sqlite") as state:
        return state.cursors.get(relay_cursor(url))


@pytest.mark.parametrize(
    ("faults", "cursors"),
    [
        ([], [None]),
        (["cut:30"], [None, FIRST + 29]),
        (["close:40"], [None, FIRST + 39]),
        (["error:20:ConsumerTooSlow"], [None, FIRST + 19]),
        (["error:0:FutureCursor"], [None, None]),
        (["info:10:OutdatedCursor"], [None]),
        (
            ["cut:5", "error:7:ConsumerTooSlow", "close:11", "info:3:OutdatedCursor"],
            [None, FIRST + 4, FIRST + 11, FIRST + 22],
        ),
    ],
    ids=["clean", "cut", "close", "too-slow", "future-cursor", "outdated", "all"],
)
def test_faults_end_with_the_uninterrupted_tree(
    tmp_path: Path, uninterrupted: set[str], faults: list[str], cursors: list[int | None]
) -> None:
    """Each fault leads to a reconnect from the last processed seq and the same cache tree."""
    relay = ReplayRelay(corpus_frames(), [parse_fault(f) for f in faults])
    with LoopbackRelay(relay) as loopback:
        assert live(tmp_path, loopback.url) == 0
    assert tree(tmp_path / "cache") == uninterrupted
    assert relay.connections == cursors
    assert stored_cursor(tmp_path, loopback.url) == LAST


def test_stalled_socket_is_reconnected_by_the_receive_timeout(
    tmp_path: Path, uninterrupted: set[str]
) -> None:
    """A relay that stops sending without closing is dropped after --recv-timeout and resumed."""
    relay = ReplayRelay(corpus_frames(), [Fault("stall", 50)])
    with LoopbackRelay(relay) as loopback:
        assert live(tmp_path, loopback.url, "--recv-timeout", "0.5") == 0
    # After the stall, a quiet but healthy relay is also "stalled" every 0.5s until --idle-exit:
    # each of those reconnects dials from the last seq too.
    assert relay.connections[:2] == [None, FIRST + 49]
    assert set(relay.connections[2:]) <= {LAST}
    assert tree(tmp_path / "cache") == uninterrupted


def test_inclusive_relay_resending_the_cursor_frame_costs_nothing(
    tmp_path: Path, uninterrupted: set[str]
) -> None:
    """A relay that resends the frame at the cursor on every reconnect: skipped, same tree."""
    relay = ReplayRelay(corpus_frames(), [Fault("cut", 60), Fault("cut", 30)], inclusive=True)
    with LoopbackRelay(relay) as loopback:
        assert live(tmp_path, loopback.url) == 0
    assert relay.connections == [None, FIRST + 59, FIRST + 88]
    assert tree(tmp_path / "cache") == uninterrupted


def test_restart_resumes_from_the_stored_cursor_and_live_ignores_it(
    tmp_path: Path, uninterrupted: set[str]
) -> None:
    """A second run dials with the stored cursor; --live dials without one; --cursor overrides.
    (A run that receives no frame at all before --idle-exit exits 1: nothing new is news.)"""
    relay = ReplayRelay(corpus_frames())
    with LoopbackRelay(relay) as loopback:
        assert live(tmp_path, loopback.url) == 0
        assert live(tmp_path, loopback.url) == 1
        assert live(tmp_path, loopback.url, "--live") == 0
        assert live(tmp_path, loopback.url, "--cursor", str(FIRST + 100)) == 0
    assert relay.connections == [None, LAST, None, FIRST + 100]
    assert tree(tmp_path / "cache") == uninterrupted


def test_record_tees_a_replayable_session(tmp_path: Path, uninterrupted: set[str]) -> None:
    """--record writes every received frame; replaying the recording rebuilds the same tree."""
    relay = ReplayRelay(corpus_frames(), [Fault("cut", 70)])
    with LoopbackRelay(relay) as loopback:
        assert live(tmp_path, loopback.url, "--record", str(tmp_path / "rec.bin")) == 0
    recorded = list(iter_replay(tmp_path / "rec.bin"))
    assert recorded == list(corpus_frames())
    again = tmp_path / "again"
    args = [
        "--cache-dir",
        str(again / "cache"),
        "--state",
        str(again / "s.sqlite"),
        "-q",
        "--no-sync",
        *users(),
    ]
    assert main([*args, "--replay", str(tmp_path / "rec.bin")]) == 0
    assert tree(again / "cache") == uninterrupted


def test_repeated_future_cursor_stops_the_writer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stored cursor beyond the relay's stream: after three FutureCursor answers in a row the
    writer stops with exit 1, naming the cursor and the way on, without writing or moving it."""
    relay = ReplayRelay(corpus_frames())
    with LoopbackRelay(relay) as loopback:
        with StateStore(tmp_path / "s.sqlite") as state:
            state.cursors.set(LAST + 1000, relay_cursor(loopback.url))
        assert live(tmp_path, loopback.url, "--idle-exit", "60") == 1
    assert relay.connections == [LAST + 1000] * 3
    assert tree(tmp_path / "cache") == set()
    assert stored_cursor(tmp_path, loopback.url) == LAST + 1000
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        error.startswith("error: the relay")
        and f"FutureCursor 3 times in a row to cursor {LAST + 1000}" in error
    )
    assert "--live" in error and "--cursor" in error


def test_cursors_are_kept_per_relay(tmp_path: Path) -> None:
    """A second relay (another host) never dials with the first one's cursor."""
    first, second = ReplayRelay(corpus_frames()), ReplayRelay(corpus_frames())
    with LoopbackRelay(first) as one, LoopbackRelay(second) as two:
        assert live(tmp_path, one.url) == 0
        assert live(tmp_path, two.url.replace("127.0.0.1", "localhost")) == 0
    assert first.connections == [None] and second.connections == [None]
    assert stored_cursor(tmp_path, one.url) == LAST


def frames_received(port: int) -> int:
    """The writer's frame count, from its /metrics (0 before it answers)."""
    try:
        _, text = get(f"http://127.0.0.1:{port}/metrics")
    except OSError:
        return 0
    counts = [
        line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith("syncstream_frames_total{")
    ]
    return sum(int(float(count)) for count in counts)


def test_sigterm_flushes_and_persists_the_cursor(tmp_path: Path) -> None:
    """A writer on a relay that holds the connection open exits 0 on SIGTERM with its cursor stored."""
    replay = write_replay(tmp_path / "r.bin", corpus_frames())
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "syncstream.servers.relay", "--replay", str(replay)],
        stdout=subprocess.PIPE,
        text=True,
    ) as relay:
        try:
            assert relay.stdout is not None
            url = relay.stdout.readline().split(" at ")[1].strip()
            with subprocess.Popen(
                [sys.executable, "-m", "syncstream.write", "-q", "--cache-dir", str(tmp_path / "cache"),
                 "--state", str(tmp_path / "s.sqlite"), *users(), "--relay", url, "--flush-frames", "100000",
                 "--flush-seconds", "3600", "--verify", "none", "--metrics", f"127.0.0.1:{port}"],
                stdout=subprocess.PIPE, text=True,
            ) as writer:  # fmt: skip
                try:  # every frame received (none durable yet: the only flush is SIGTERM's)
                    wait_for(lambda: frames_received(port) == len(corpus_frames()))
                finally:
                    writer.send_signal(signal.SIGTERM)
                    out, _ = writer.communicate(timeout=30)
                assert writer.returncode == 0
        finally:
            relay.send_signal(signal.SIGTERM)
            relay.wait(timeout=10)
    assert relay.returncode == 0
    assert f"cursor: {LAST}" in out
    assert stored_cursor(tmp_path, url) == LAST


def test_sighup_rereads_the_user_files(tmp_path: Path) -> None:
    """After SIGHUP a newly listed study user's posts are written, without a restart."""
    newcomer, other = "did:plc:newcomernewcomernewcome", "did:plc:otherotherotherotherothe"
    frames = [
        commit(100 + i, newcomer if i % 2 else other, OpSpec("create", f"app.bsky.feed.post/p{i}", post()))
        for i in range(20)
    ]
    expected = {f"p{i}.json" for i in range(20) if i % 2 == 0 or i >= 10}
    study = write_users(tmp_path / "study.txt", [other])
    replay = write_replay(tmp_path / "r.bin", frames)
    log = tmp_path / "writer.log"

    def posts() -> set[str]:
        return {name.rsplit("suffix=", 1)[1] for name in tree(tmp_path / "cache") if name.endswith(".json")}

    with subprocess.Popen(
        [sys.executable, "-m", "syncstream.servers.relay", "--replay", str(replay), "--fault", "stall:10"],
        stdout=subprocess.PIPE, text=True,
    ) as relay:  # fmt: skip
        try:
            assert relay.stdout is not None
            url = relay.stdout.readline().split(" at ")[1].strip()
            # The relay stalls after the first 10 frames; the writer redials after --recv-timeout,
            # by when the SIGHUP below has been handled (it is, within 0.1 s of its arrival).
            with log.open("w") as stderr, subprocess.Popen(
                [sys.executable, "-m", "syncstream.write", "--cache-dir", str(tmp_path / "cache"),
                 "--state", str(tmp_path / "s.sqlite"), "--study-users", str(study), "--relay", url,
                 "--verify", "none", "--recv-timeout", "3", "--reconnect-delay", "0.05"],
                stdout=subprocess.PIPE, stderr=stderr, text=True,
            ) as writer:  # fmt: skip
                try:
                    wait_for(lambda: len(posts()) >= 5, "the first five study posts written")
                    write_users(study, [other, newcomer])
                    writer.send_signal(signal.SIGHUP)
                    wait_for(lambda: "SIGHUP: 2 study users" in log.read_text(), "the user files re-read")
                    wait_for(lambda: posts() == expected, "the newcomer's posts written")
                finally:
                    writer.send_signal(signal.SIGTERM)
                    writer.communicate(timeout=60)
                assert writer.returncode == 0, log.read_text()
        finally:
            relay.send_signal(signal.SIGTERM)
            relay.wait(timeout=10)
    assert posts() == expected


def test_track_follows_keeps_the_in_network_set_current(tmp_path: Path) -> None:
    """A study user's follow brings the followee's posts in; the unfollow stops them; persisted."""
    study, friend = "did:plc:studystudystudystudystu", "did:plc:friendfriendfriendfriend"
    frames = [
        commit(1, friend, OpSpec("create", "app.bsky.feed.post/before", post())),
        commit(2, study, OpSpec("create", "app.bsky.graph.follow/f1", follow(friend))),
        commit(3, friend, OpSpec("create", "app.bsky.feed.post/during", post())),
    ]
    later = [
        commit(4, friend, OpSpec("create", "app.bsky.feed.post/after-restart", post())),
        commit(5, study, OpSpec("delete", "app.bsky.graph.follow/f1")),
        commit(6, friend, OpSpec("create", "app.bsky.feed.post/after-unfollow", post())),
    ]
    args = [*store_args(tmp_path), "--track-follows"]
    args += ["--study-users", str(write_users(tmp_path / "study.txt", [study]))]
    assert main([*args, "--replay", str(write_replay(tmp_path / "a.bin", frames))]) == 0
    assert main([*args, "--replay", str(write_replay(tmp_path / "b.bin", later))]) == 0
    in_network = {p.rsplit("suffix=", 1)[1] for p in tree(tmp_path / "cache") if p.startswith("in_network")}
    assert in_network == {"during.json", "after-restart.json"}


def test_relay_urls_are_normalised() -> None:
    """A base with or without /xrpc, or the full method URL, all dial the same endpoint."""
    for url in [
        "wss://bsky.network",
        "wss://bsky.network/",
        "wss://bsky.network/xrpc",
        "wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos",
    ]:
        assert relay_base_uri(url) == "wss://bsky.network/xrpc"


def test_relay_command_rejects_bad_faults_and_paths(tmp_path: Path) -> None:
    """The relay command explains a bad --fault and a missing replay."""
    result = subprocess.run(
        [sys.executable, "-m", "syncstream.servers.relay", "--replay", "x", "--fault", "boom:1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "bad fault 'boom:1'" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "syncstream.servers.relay", "--replay", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "replay file not found" in result.stderr


def test_with_seq_renumbers_a_real_frame_and_keeps_the_rest() -> None:
    """with_seq gives a real frame a new 64-bit seq; its commit decodes to the same ops."""
    frame = corpus_frames()[1]
    before, after = decode_frame(frame), decode_frame(with_seq(frame, 2**40))
    assert after.seq == 2**40 and after.commit is not None and before.commit is not None
    assert after.commit.ops == before.commit.ops
    assert (after.commit.repo, after.commit.rev) == (before.commit.repo, before.commit.rev)


def test_relay_rate_paces_the_stream(tmp_path: Path, uninterrupted: set[str]) -> None:
    """--rate holds the relay to a frame rate (a lower bound on the duration; the cache is the same)."""
    relay = ReplayRelay(corpus_frames(), rate=500.0)
    with LoopbackRelay(relay) as loopback:
        started = time.monotonic()
        assert live(tmp_path, loopback.url, "--idle-exit", "0.5") == 0
    assert time.monotonic() - started >= (150 - 50) / 500.0
    assert tree(tmp_path / "cache") == uninterrupted


def test_stall_is_reconnected_before_idle_exit_fires(tmp_path: Path, uninterrupted: set[str]) -> None:
    """With only --idle-exit given, a stalled relay still gets a reconnect before the writer exits."""
    relay = ReplayRelay(corpus_frames(), [Fault("stall", 80)])
    with LoopbackRelay(relay) as loopback:
        args = [
            *store_args(tmp_path),
            *users(),
            "--relay",
            loopback.url,
            "--idle-exit",
            "2",
            "--verify",
            "none",
        ]
        assert main([*args, "--reconnect-delay", "0.05"]) == 0
    assert relay.connections[:2] == [None, FIRST + 79]
    assert tree(tmp_path / "cache") == uninterrupted
