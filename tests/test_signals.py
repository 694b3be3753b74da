"""Signals an operator reads: exit statuses of reruns, progress lines, JSON and text logs, error
lines instead of tracebacks."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

import pytest

from syncstream.cache import WriterLock
from syncstream.cli import JsonFormatter, escape, human_seconds
from syncstream.failpoints import ENV
from syncstream.firehose.encode import OpSpec, event_frame
from syncstream.servers.pds import LoopbackPds, PdsFault
from syncstream.signals import StopFlag
from syncstream.store import StateStore
from tests.helpers import CORPUS, ROOT, commit, corpus_frames, post, wait_for, write_replay, write_users

SAMPLE = ROOT / "syncstream" / "data"
STUDY = "did:plc:studystudystudystudystu"


def command(
    module: str, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite"), "--no-sync"]


def test_rerun_of_a_finished_replay_with_other_bytes_exits_0(tmp_path: Path) -> None:
    """A replay whose relay frames are all at or below the stored cursor, beside bytes that are
    no relay frame, is finished work: every rerun exits 0 and says what it skipped."""
    frames = [commit(1, STUDY, OpSpec("create", "app.bsky.feed.post/3ok", post())), b"\x00garbage",
              commit(2, STUDY, OpSpec("create", "app.bsky.feed.post/3ol", post())), b"\x01more garbage"]  # fmt: skip
    replay = write_replay(tmp_path / "r.bin", frames)
    args = [
        *store(tmp_path),
        "--study-users",
        str(write_users(tmp_path / "u.txt", [STUDY])),
        "--replay",
        str(replay),
    ]
    runs = [command("syncstream.write", *args) for _ in range(3)]
    assert [run.returncode for run in runs] == [0, 0, 0], runs[-1].stderr
    assert "skipped at or below the stored cursor: 2" in runs[-1].stdout
    garbage = write_replay(tmp_path / "g.bin", [b"\x00garbage", b"\x01more garbage"])
    only = command("syncstream.write", *args[:-1], str(garbage))
    assert only.returncode == 1 and "none of its 2 frames is a relay frame" in only.stderr


def test_progress_lines_with_replay_are_readable(tmp_path: Path) -> None:
    """--progress-seconds applies to a replay; the line gives the rate, the frames by type as
    words, the lag in days and hours; its JSON form has the totals as fields."""
    replay = write_replay(tmp_path / "r.bin", corpus_frames())
    users = ["--study-users", str(SAMPLE / "sample_study_users.txt")]
    text = command("syncstream.write", *store(tmp_path / "t"), *users, "--replay", str(replay),
                   "--progress-seconds", "0.000001")  # fmt: skip
    assert text.returncode == 0, text.stderr
    lines = [line for line in text.stderr.splitlines() if "frames/s" in line]
    assert lines and not any("{" in line for line in lines)
    assert re.search(r"\| frames [\d,]+ \((\w+ [\d,]+, )*commit [\d,]+[,)].* \| lag \d+d \d+h$", lines[-1]), (
        lines[-1]
    )
    structured = command("syncstream.write", *store(tmp_path / "j"), *users, "--replay", str(replay),
                         "--progress-seconds", "0.000001", "--log-format", "json")  # fmt: skip
    events = [json.loads(line) for line in structured.stderr.splitlines()]
    progress = [event for event in events if event["event"] == "progress"]
    assert progress and progress[-1]["frames_total"] <= 150 and progress[-1]["lag_seconds"] > 86400


def test_json_logs_every_line_an_object_with_a_stable_event(tmp_path: Path) -> None:
    """With --log-format json every stderr line, the final error line included, is a JSON
    object whose event is a name (not the message)."""
    frames = [commit(1, STUDY, OpSpec("create", "app.bsky.feed.post/..", post())), b"\x00garbage"]
    users = ["--study-users", str(write_users(tmp_path / "u.txt", [STUDY]))]
    written = command("syncstream.write", *store(tmp_path), *users, "--log-format", "json",
                      "--replay", str(write_replay(tmp_path / "r.bin", frames)))  # fmt: skip
    missing = command("syncstream.write", *store(tmp_path), *users, "--log-format", "json",
                      "--replay", str(tmp_path / "missing.bin"))  # fmt: skip
    assert written.returncode == 0 and missing.returncode == 2
    entries = [json.loads(line) for line in (written.stderr + missing.stderr).splitlines()]
    assert [entry["event"] for entry in entries] == ["rejected", "replay_not_found"]
    plain = logging.LogRecord(
        "syncstream.write", logging.INFO, __file__, 0, "connecting to %s", ("ws://x",), None
    )
    entries.append(json.loads(JsonFormatter().format(plain)))
    assert entries[-1]["event"] == "connecting_to" and entries[-1]["args"] == ["ws://x"]
    for entry in entries:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", entry["event"]), entry
    assert entries[1]["level"] == "error" and "missing.bin" in entries[1]["message"]


def test_text_logs_escape_what_the_network_sends(tmp_path: Path) -> None:
    """An rkey with a newline and an ANSI escape is rejected and logged escaped: it forges no
    line and sends no escape to the terminal."""
    rkey = "3ok\n2026-01-01 00:00:00 INFO forged: \x1b[31mred"
    frames = [commit(1, STUDY, OpSpec("create", f"app.bsky.feed.post/{rkey}", post()))]
    run = command("syncstream.write", *store(tmp_path), "--study-users", str(write_users(tmp_path / "u.txt", [STUDY])),
                  "--replay", str(write_replay(tmp_path / "r.bin", frames)))  # fmt: skip
    assert run.returncode == 0
    assert "\x1b" not in run.stderr + run.stdout
    assert not any(line.startswith("2026-01-01") for line in run.stderr.splitlines())
    assert "3ok\\n2026-01-01" in run.stderr and "\\x1b[31m" in run.stderr
    assert escape("a\r\n\x1b\u2028") == "a\\r\\n\\x1b\\u2028"


@pytest.mark.parametrize(("seconds", "text"), [(5.25, "5.2s"), (75, "1m 15s"), (3725, "1h 2m"),
                                               (12952025.5, "149d 21h"), (-3, "-3.0s")])  # fmt: skip
def test_lag_reads_as_days_hours_minutes(seconds: float, text: str) -> None:
    """A lag reads as 149d 21h, not 12952025.5s."""
    assert human_seconds(seconds) == text


@pytest.mark.parametrize("module", ["syncstream.write.writes", "syncstream.export.parts"])
def test_helper_modules_explain_themselves(module: str) -> None:
    """A helper run by hand (--help, or no arguments) says what it is, without a traceback."""
    helped = command(module, "--help")
    assert helped.returncode == 0 and "helper process" in helped.stdout and not helped.stderr
    bare = command(module)
    assert bare.returncode == 2 and bare.stderr.startswith("error: ") and "Traceback" not in bare.stderr


def test_output_closed_early_is_no_traceback(tmp_path: Path) -> None:
    """A reader that goes away (| head) costs the rest of the output, not a traceback: the
    writer and the export still do their work and exit 0."""
    read, write = os.pipe()
    os.close(read)
    try:
        for module, args in (("syncstream.write", store(tmp_path)),
                             ("syncstream.export", [*store(tmp_path)[:-1], "--out", str(tmp_path / "out")])):  # fmt: skip
            run = subprocess.run([sys.executable, "-m", module, *args], stdout=write, stderr=subprocess.PIPE,
                                 text=True, check=False, cwd=tmp_path, timeout=120)  # fmt: skip
            assert run.returncode == 0, run.stderr
            assert "Traceback" not in run.stderr and "BrokenPipe" not in run.stderr
    finally:
        os.close(write)
    assert list((tmp_path / "out").rglob("*.parquet"))


@pytest.mark.parametrize(
    "module", ["syncstream.write", "syncstream.export", "syncstream.purge", "syncstream.backfill"]
)
def test_malformed_failpoints_are_an_error_line(tmp_path: Path, module: str) -> None:
    """A malformed SYNCSTREAM_FAILPOINTS is one error line and exit 2, not a traceback."""
    extra = ["--did", STUDY] if module in ("syncstream.purge", "syncstream.backfill") else []
    run = command(module, *store(tmp_path)[:-1], *extra, env={**os.environ, ENV: "nonsense"})
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"error: {ENV}: 'nonsense' is not point:hit:action"]


def test_httpx_request_lines_are_not_logged() -> None:
    """The commands' logging keeps the HTTP client's one INFO line per request out."""
    code = ("from syncstream.cli import setup_logging; import logging; setup_logging(False); "
            "logging.getLogger('httpx').info('HTTP Request: GET x'); logging.getLogger('syncstream').info('kept')")  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert "HTTP Request" not in run.stderr and "kept" in run.stderr


def test_only_the_writer_creates_a_state_store(tmp_path: Path) -> None:
    """The export, the purge and the backfill given a missing --state exit 2 and create
    nothing; a file that is not a store (a README, an empty file) is refused, unchanged, by
    every command."""
    (tmp_path / "cache").mkdir()
    before = set(tmp_path.rglob("*"))
    out = ["--out", str(tmp_path / "out")]
    commands = {"syncstream.export": out, "syncstream.purge": [*out, "--did", STUDY],
                "syncstream.backfill": ["--did", STUDY]}  # fmt: skip
    for module, extra in commands.items():
        run = command(
            module, "--cache-dir", str(tmp_path / "cache"), "--state", str(tmp_path / "typo.sqlite"), *extra
        )
        assert run.returncode == 2, (module, run.stderr)
        assert run.stderr.startswith(f"error: no state store at {tmp_path / 'typo.sqlite'}"), run.stderr
        assert set(tmp_path.rglob("*")) == before, module
    readme, empty = tmp_path / "README.md", tmp_path / "empty"
    readme.write_bytes((ROOT / "README.md").read_bytes())
    empty.touch()
    contents = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (readme, empty)}
    for state in (readme, empty):
        for module, extra in {**commands, "syncstream.write": []}.items():
            if module == "syncstream.write" and state == empty:
                continue  # the writer's to create
            run = command(module, "--cache-dir", str(tmp_path / "cache"), "--state", str(state), *extra)
            assert run.returncode == 2, (module, run.stderr)
            assert "is not a syncstream state store" in run.stderr, run.stderr
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in (readme, empty)} == contents
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(("README.md-", "empty-"))]


def test_handles_and_revs_are_checked_before_they_are_kept(tmp_path: Path) -> None:
    """An #identity whose handle is not a handle (a newline, 100,000 characters) and a #sync
    whose rev is not a TID are rejections by reason, and no file; valid ones are kept."""
    time = "2026-07-04T14:38:07.517Z"
    frames = [
        event_frame("identity", seq=1, did=STUDY, time=time, handle="evil.example.com\nforged"),
        event_frame("identity", seq=2, did=STUDY, time=time, handle="a" * 100_000),
        event_frame("sync", seq=3, did=STUDY, time=time, rev="not a tid!!", blocks=b""),
        event_frame("identity", seq=4, did=STUDY, time=time, handle="study.example.com"),
        event_frame("sync", seq=5, did=STUDY, time=time, rev="3mptbypluud2b", blocks=b""),
    ]
    users = tmp_path / "u.txt"
    users.write_bytes(b"\xef\xbb\xbf" + f"{STUDY}  # saved with a byte-order mark\n".encode())
    run = command("syncstream.write", *store(tmp_path), "--study-users", str(users),
                  "--replay", str(write_replay(tmp_path / "r.bin", frames)))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "  invalid_handle: 2\n  invalid_rev: 1\n" in run.stdout
    events = tmp_path / "cache" / "population" / "account_event"
    assert sorted(p.name for p in events.rglob("*.json")) == [
        f"did={STUDY}_seq=4.json",
        f"did={STUDY}_seq=5.json",
    ]


def test_a_purge_that_times_out_names_the_command_holding_the_cache(tmp_path: Path) -> None:
    """A purge waiting on a backfill command (which never applies populations) says that the
    backfill holds the cache, not a writer."""
    did = "did:plc:53iucmf5ldftgqyf2ac7hmhd"  # the corpus repository's
    StateStore(tmp_path / "s.sqlite").close()
    (tmp_path / "cache").mkdir()
    with LoopbackPds({did: (CORPUS / "repo.car").read_bytes()}, {did: PdsFault("slow", 60.0)}) as pds:
        study = write_users(tmp_path / "study.txt", [did])  # only a study user is backfilled
        backfill = [sys.executable, "-m", "syncstream.backfill", *store(tmp_path)[:-1], "--did", did,
                    "--study-users", str(study), "--plc-url", pds.url, "--timeout", "120"]  # fmt: skip
        with subprocess.Popen(backfill, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as holder:
            try:
                lock = WriterLock(str(tmp_path / "cache"))
                wait_for(lambda: lock.holder() == f"python -m syncstream.backfill (pid {holder.pid})")
                purge = command(
                    "syncstream.purge", *store(tmp_path)[:-1], "--did", did, "--writer-timeout", "0.2"
                )  # fmt: skip (it never exported: no --out)
            finally:
                holder.kill()
    assert purge.returncode == 1
    assert f"python -m syncstream.backfill (pid {holder.pid}) holds the cache" in purge.stderr, purge.stderr
    assert "a backfill never does" in purge.stderr


def test_export_progress_has_totals_and_rates(tmp_path: Path) -> None:
    """The export says its totals so far and its rates every --progress-seconds (here after
    each of its 3 batches), and once more when it is done."""
    assert command("syncstream.write", *store(tmp_path), cwd=tmp_path).returncode == 0
    run = command("syncstream.export", *store(tmp_path)[:-1], "--out", str(tmp_path / "out"), "--batch-files", "5",
                  "--progress-seconds", "0.000001", "--log-format", "json", "--inline-parquet")  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stderr.splitlines()]
    progress = [line for line in lines if line["event"] == "progress"]
    assert [line["stage"] for line in progress] == ["progress"] * (len(progress) - 1) + ["done"]
    assert len(progress) >= 3 and [line["files"] for line in progress] == sorted(
        line["files"] for line in progress
    )
    assert (progress[-1]["batches"], progress[-1]["files"]) == (3, 15)
    done = progress[-1]
    assert (
        done["rows"] == 15
        and done["bytes"] > 0
        and done["files_per_second"] > 0
        and done["rows_per_second"] > 0
    )


def test_a_stop_flag_set_by_a_signal_handler_wakes_the_wait_it_interrupted() -> None:
    """The handler runs in the main thread, inside ``wait``: a ``threading.Event`` there can
    deadlock (its ``set`` takes the lock its ``wait`` holds); a ``StopFlag`` takes none, and the
    wait it interrupted returns set, long before its timeout."""
    flag = StopFlag()
    previous = signal.signal(signal.SIGALRM, lambda *_: flag.set())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        assert flag.wait(60) is True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_stop_flag_wakes_every_waiting_thread_and_stays_set() -> None:
    flag = StopFlag()
    woken: list[bool] = []
    waiters = [threading.Thread(target=lambda: woken.append(flag.wait(60))) for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    flag.set()
    for waiter in waiters:
        waiter.join()
    assert woken == [True, True, True]
    assert flag.is_set() and flag.wait(0) is True
    assert StopFlag().wait(0) is False
