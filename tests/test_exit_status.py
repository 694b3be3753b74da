"""Exit statuses and messages that say what happened: a backfill that did nothing, a helper that
died, a compaction of today, the rehearsal servers with their defaults, and an export that
finished an interrupted run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from benchmarks.repos import build_repo
from syncstream.errors import ConfigError, HelperError
from syncstream.export.parts import HelperParts
from syncstream.failpoints import ENV
from syncstream.firehose.replay import iter_replay
from syncstream.lake.compact import CompactOptions, compact_tables
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.handlers import datasets_of
from syncstream.servers.pds import LoopbackPds, PdsFault
from syncstream.servers.relay import PATH, LoopbackRelay, ReplayRelay
from syncstream.store import StateStore
from syncstream.write.__main__ import main as write_main
from tests.helpers import ROOT, corpus_frames, write_replay, write_users

DID = "did:plc:studystudystudystudystu"
SAMPLE = ROOT / "syncstream" / "data"


def python(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != ENV} | (env or {})
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=environment, check=False, timeout=120)  # fmt: skip


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite")]


def test_a_backfill_that_backfilled_nothing_because_every_did_failed_exits_1(tmp_path: Path) -> None:
    """A backfill whose every DID failed exits 1 with one error line naming them; so does a
    rerun during their backoff, which backfills nothing (before: exit 0)."""
    study = write_users(tmp_path / "study.txt", [DID])
    StateStore(tmp_path / "s.sqlite").close()
    with LoopbackPds({DID: build_repo(DID, 5)}, {DID: PdsFault("error", 500)}) as pds:
        args = [*store(tmp_path), "-q", "--study-users", str(study), "--plc-url", pds.url]
        for _ in range(2):  # the failure, then the rerun while it waits for its retry
            done = python("syncstream.backfill", *args)
            assert done.returncode == 1, done.stderr
            errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1 and DID in errors[0], done.stderr


def test_an_export_whose_helper_dies_before_it_answers_is_a_failure_not_bad_input(tmp_path: Path) -> None:
    """The Parquet helper killed before it opened the output: a ``HelperError`` (exit 1), not the
    ``ConfigError`` of an output that cannot be opened (exit 2)."""
    parts = HelperParts(str(tmp_path / "out"))
    try:
        os.kill(parts.helper._process.pid, signal.SIGKILL)
        with pytest.raises(HelperError) as raised:
            parts.describe()
    finally:
        parts.kill()
    assert not isinstance(raised.value, ConfigError)


def test_compact_older_than_0_days_compacts_today(tmp_path: Path) -> None:
    """``--older-than-days 0`` compacts every partition, today's included (before: none); the
    default leaves today's open."""
    frames = list(iter_replay(SAMPLE / "sample_frames.bin.zst"))
    users = ["--study-users", str(SAMPLE / "sample_study_users.txt"),
             "--in-network-users", str(SAMPLE / "sample_in_network_users.txt")]  # fmt: skip
    out = str(tmp_path / "out")
    for half in (frames[: len(frames) // 2], frames[len(frames) // 2 :]):  # two files a partition
        replay = write_replay(tmp_path / "half.bin", half)
        assert write_main([*store(tmp_path), "-q", "--no-sync", "--replay", str(replay), *users]) == 0
        assert python("syncstream.export", *store(tmp_path), "-q", "--out", out).returncode == 0
    datasets = datasets_of(HANDLERS).values()
    assert compact_tables(CompactOptions(out=out), datasets).partitions == 0
    compacted = compact_tables(CompactOptions(out=out, older_than_days=0), datasets)
    assert compacted.partitions > 0 and compacted.files_removed > compacted.files_added


def test_the_pds_command_with_its_defaults_serves_the_key_rehearsal_repositories_are_signed_with(
    tmp_path: Path,
) -> None:
    """``syncstream pds --repo CAR``, no ``--key-seed``: a backfill from it verifies and is done
    (before: its documents published a key nothing was signed with, and every backfill failed)."""
    (tmp_path / "repo.car").write_bytes(build_repo(DID, 20))
    study = write_users(tmp_path / "study.txt", [DID])
    StateStore(tmp_path / "s.sqlite").close()
    server = subprocess.Popen([sys.executable, "-m", "syncstream.servers.pds", "--repo", str(tmp_path / "repo.car")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split(" at ")[1].strip()
        done = python(
            "syncstream.backfill", *store(tmp_path), "-q", "--study-users", str(study), "--plc-url", url
        )
        assert done.returncode == 0, done.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=30)
    assert server.returncode == 0 and "Traceback" not in errors
    with StateStore(tmp_path / "s.sqlite", create=False) as state:
        assert state.backfills.recorded()[DID].status == "done"


def test_the_relay_paces_each_frame_evenly() -> None:
    """With ``rate``, frame k is sent k/rate seconds after the first (before: bursts of 50, then
    a pause a writer can take for a stall)."""
    rate = 200.0

    async def arrivals() -> list[float]:
        with LoopbackRelay(ReplayRelay(corpus_frames()[:41], rate=rate)) as relay:
            async with connect(relay.url + PATH) as client:
                times = []
                for _ in range(41):
                    await client.recv()
                    times.append(time.monotonic())
                return times

    times = asyncio.run(arrivals())
    spans = [times[k] - times[0] for k in (10, 20, 40)]
    assert [round(span * rate) >= k - 2 for span, k in zip(spans, (10, 20, 40), strict=True)] == [True] * 3
    assert times[-1] - times[0] < 40 / rate + 1.0  # paced, not slowed down


def test_a_client_leaving_the_relay_is_one_log_line() -> None:
    """A client that goes away mid-stream: one ``a client left`` line on the relay's stderr, no
    traceback; SIGTERM then stops it with exit 0."""
    from tests.helpers import CORPUS

    relay = subprocess.Popen([sys.executable, "-m", "syncstream.servers.relay", "--replay", str(CORPUS / "frames.bin.zst"),
                              "--rate", "100"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert relay.stdout is not None
        url = relay.stdout.readline().split(" at ")[1].strip()

        async def leave() -> None:
            async with connect(url) as client:
                for _ in range(3):
                    await client.recv()

        asyncio.run(leave())
        time.sleep(0.5)  # for the relay's next send to find the connection gone
    finally:
        relay.send_signal(signal.SIGTERM)
        _, errors = relay.communicate(timeout=30)
    assert relay.returncode == 0, errors
    assert "Traceback" not in errors
    assert len([line for line in errors.splitlines() if "a client left" in line]) == 1, errors


def test_an_export_that_finishes_an_interrupted_run_says_what_it_committed(tmp_path: Path) -> None:
    """An export killed after recording its run; the next one commits it, and says so in a line
    of its own with the run's rows, apart from the rows of cache files it read itself (before:
    "exported 15 rows from 0 cache files")."""
    assert write_main([*store(tmp_path), "-q", "--no-sync"]) == 0  # the bundled sample: 15 rows
    args = [*store(tmp_path), "-q", "--out", str(tmp_path / "out")]
    killed = python("syncstream.export", *args, env={ENV: "export.run_recorded:1:kill"})
    assert killed.returncode == -9
    done = python("syncstream.export", *args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("recovered run ") and lines[0].split(": ", 1)[1].startswith(
        "15 rows committed"
    )
    assert lines[1].startswith("exported 0 rows from 0 cache files")
