"""Clean stops: SIGTERM while a repository is being fetched ends the backfill command and the
writer with exit 0 and their summary; what was under way is abandoned and done by the next
run; no live commit is lost."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from syncstream.firehose.encode import OpSpec
from syncstream.servers.keys import REHEARSAL_SEED, SigningKey, resign_car
from syncstream.servers.pds import LoopbackPds, PdsFault
from syncstream.store import StateStore
from tests.helpers import CORPUS, commit, post, tree, wait_for, write_replay, write_users

KEY = SigningKey(REHEARSAL_SEED)
DID = "did:plc:53iucmf5ldftgqyf2ac7hmhd"
CAR = resign_car((CORPUS / "repo.car").read_bytes(), KEY)
FIRST = 10**10
LIVE = 40


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite"), "-q"]


def test_sigterm_during_a_fetch_ends_the_backfill_command_cleanly(tmp_path: Path) -> None:
    """The command stops with exit 0 and its summary; nothing is recorded for the abandoned DID,
    and the next run backfills it."""
    study = write_users(tmp_path / "study.txt", [DID])
    StateStore(tmp_path / "s.sqlite").close()  # the writer's part: a backfill creates no store
    with LoopbackPds({DID: CAR}, {DID: PdsFault("trickle", 0.05)}, key=KEY) as pds:
        command = [sys.executable, "-m", "syncstream.backfill", *store(tmp_path), "--study-users", str(study),
                   "--plc-url", pds.url]  # fmt: skip
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
            wait_for(lambda: pds.requests, "getRepo asked for")
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "stopped: 1 abandoned, backfilled by the next run" in out
    assert f"{DID}: abandoned while fetching" in out
    assert "Traceback" not in err
    with StateStore(tmp_path / "s.sqlite") as state:
        assert DID not in state.backfills.recorded()
    with LoopbackPds({DID: CAR}, key=KEY) as pds:
        command[command.index("--plc-url") + 1] = pds.url
        assert subprocess.run(command, capture_output=True, check=False).returncode == 0
    with StateStore(tmp_path / "s.sqlite") as state:
        assert state.backfills.recorded()[DID][0] == "done"


def test_sigterm_during_a_fetch_ends_the_writer_cleanly_and_loses_no_live_commit(tmp_path: Path) -> None:
    """A writer with --backfill whose study user's PDS trickles: SIGTERM ends it with exit 0 and
    its summary, no traceback; every live commit of that user up to the stored cursor is in the
    cache (held ones written as live at the stop), and nothing is recorded for the backfill."""
    other = "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz"  # waits its turn (one backfill at a time): not held
    frames = [
        commit(
            FIRST + i, (DID, other)[i % 2], OpSpec("create", f"app.bsky.feed.post/3live{i:03d}", post(f"{i}"))
        )
        for i in range(LIVE)
    ]
    replay = write_replay(tmp_path / "r.bin", frames)
    study = write_users(tmp_path / "study.txt", [DID, other])
    relay_command = [
        sys.executable,
        "-m",
        "syncstream.servers.relay",
        "--replay",
        str(replay),
        "--rate",
        "50",
    ]
    with (
        LoopbackPds({DID: CAR}, {DID: PdsFault("trickle", 0.05)}, key=KEY) as pds,
        subprocess.Popen(relay_command, stdout=subprocess.PIPE, text=True) as relay,
    ):
        try:
            assert relay.stdout is not None
            url = relay.stdout.readline().split(" at ")[1].strip()
            command = [sys.executable, "-m", "syncstream.write", *store(tmp_path), "--study-users", str(study),
                       "--relay", url, "--backfill", "--plc-url", pds.url, "--flush-seconds", "0.2",
                       "--verify", "none", "--backfill-concurrency", "1"]  # fmt: skip
            with subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ) as writer:
                wait_for(lambda: pds.requests, "getRepo asked for")
                mine = f"author_did={other}"
                wait_for(lambda: sum(mine in n for n in tree(tmp_path / "cache")) >= 5, "live frames written")
                writer.send_signal(signal.SIGTERM)
                out, err = writer.communicate(timeout=60)
        finally:
            relay.send_signal(signal.SIGTERM)
            relay.wait(timeout=10)
    assert writer.returncode == 0, err
    assert "frames:" in out and "cursor:" in out
    assert "Traceback" not in err and "error:" not in err
    with StateStore(tmp_path / "s.sqlite") as state:
        cursor = state.cursors.get(f"cursor:{url.split('://')[1].split('/')[0]}")
        assert DID not in state.backfills.recorded()
    assert cursor is not None and cursor >= FIRST + 9
    written = sorted(name.rsplit("=", 1)[1] for name in tree(tmp_path / "cache") if "3live" in name)
    assert written[: cursor - FIRST + 1] == [f"3live{i:03d}.json" for i in range(cursor - FIRST + 1)]
    assert pds.requests == [DID]  # the other was never started, so never held


def test_a_replay_with_a_backfill_ends_while_a_pds_trickles(tmp_path: Path) -> None:
    """write --replay --backfill against a PDS that never finishes: the fetch is cut at its
    deadline, the DID recorded failed, its live commits written, and the run ends (exit 0)."""
    from syncstream.write.__main__ import main as write_main

    frames = [
        commit(FIRST + i, DID, OpSpec("create", f"app.bsky.feed.post/3live{i:03d}", post())) for i in range(5)
    ]
    replay = write_replay(tmp_path / "r.bin", frames)
    study = write_users(tmp_path / "study.txt", [DID])
    with LoopbackPds({DID: CAR}, {DID: PdsFault("trickle", 0.05)}, key=KEY) as pds:
        args = [*store(tmp_path), "--no-sync", "--replay", str(replay), "--study-users", str(study),
                "--backfill", "--plc-url", pds.url, "--backfill-deadline", "1"]  # fmt: skip
        assert write_main(args) == 0
    with StateStore(tmp_path / "s.sqlite") as state:
        status, _, reason, _ = state.backfills.recorded()[DID]
        assert status == "failed" and "deadline of 1s passed" in (reason or "")
        assert state.cursors.get() == FIRST + 4
    assert len([name for name in tree(tmp_path / "cache") if "3live" in name]) == 5
