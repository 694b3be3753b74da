"""Running it for months: the writer's /metrics and /healthz, the export's metrics file, JSON
logs, --every, and the deploy files."""

from __future__ import annotations

import contextlib
import json
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from syncstream.options import parse_duration
from syncstream.servers.relay import LoopbackRelay, ReplayRelay, parse_fault
from syncstream.write.context import setup_cache_write_system
from syncstream.write.metrics import MetricsServer
from syncstream.write.writer import CacheWriter
from tests.helpers import ROOT, corpus_frames, free_port, get, wait_for, write_replay

SAMPLE = ROOT / "syncstream" / "data"
USERS = ["--study-users", str(SAMPLE / "sample_study_users.txt"),
         "--in-network-users", str(SAMPLE / "sample_in_network_users.txt")]  # fmt: skip


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite")]


def test_writer_metrics_and_health_from_a_live_relay(tmp_path: Path) -> None:
    """/metrics counts frames, files and the cursor while frames flow and /healthz says 200;
    once the relay goes quiet past --health-max-age, /healthz says 503 and why."""
    replay = write_replay(tmp_path / "r.bin", corpus_frames())
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "syncstream.servers.relay", "--replay", str(replay), "--rate", "100"],
        stdout=subprocess.PIPE, text=True,
    ) as relay:  # fmt: skip
        try:
            assert relay.stdout is not None
            url = relay.stdout.readline().split(" at ")[1].strip()
            command = [sys.executable, "-m", "syncstream.write", "-q", *store(tmp_path), *USERS, "--relay", url, "--verify", "none",
                       "--metrics", f"127.0.0.1:{port}", "--health-max-age", "1", "--flush-seconds", "0.2"]  # fmt: skip
            with subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ) as writer:
                try:
                    base = f"http://127.0.0.1:{port}"
                    wait_for(lambda: _answers(base) and get(f"{base}/healthz") == (200, "ok\n"))
                    wait_for(lambda: "syncstream_cursor 3.15" in get(f"{base}/metrics")[1])
                    status, text = get(f"{base}/metrics")
                    assert status == 200
                    frames = re.search(r'syncstream_frames_total\{kind="commit"\} (\d+)', text)
                    assert frames is not None and int(frames.group(1)) > 0
                    assert re.search(r'syncstream_files_written_total\{handler="[a-z_]+"\} \d', text)
                    assert "syncstream_flush_seconds_bucket" in text
                    assert "syncstream_last_frame_timestamp_seconds 1." in text
                    assert "syncstream_event_lag_seconds" in text
                    wait_for(lambda: get(f"{base}/healthz")[0] == 503)  # the corpus ends; the relay idles
                    assert get(f"{base}/healthz")[1].startswith("no frame for ")
                finally:
                    writer.send_signal(signal.SIGTERM)
                    out, err = writer.communicate(timeout=30)
            assert writer.returncode == 0, err
            assert f"cache: {(tmp_path / 'cache').resolve()}" in out
        finally:
            relay.send_signal(signal.SIGTERM)
            relay.wait(timeout=10)


def _answers(base: str) -> bool:
    try:
        get(f"{base}/healthz")
    except OSError:
        return False
    return True


def test_json_logs_parse_line_by_line(tmp_path: Path) -> None:
    """With --log-format json, every stderr line of the writer and the export is a JSON object
    with time, level and event; the export's progress is a structured event."""
    write = subprocess.run(
        [sys.executable, "-m", "syncstream.write", *store(tmp_path), "--log-format", "json", "--no-sync"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    export = subprocess.run(
        [sys.executable, "-m", "syncstream.export", *store(tmp_path), "--out", str(tmp_path / "out"),
         "--log-format", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert write.returncode == 0 and export.returncode == 0, export.stderr
    events = []
    for line in (write.stderr + export.stderr).splitlines():
        entry = json.loads(line)
        assert {"time", "level", "event", "message", "logger"} <= set(entry)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
        events.append(entry)
    [progress] = [e for e in events if e["event"] == "progress"]
    assert progress["rows"] == 15 and progress["files"] == 15 and progress["batches"] == 1


def test_export_metrics_file_records_success_and_failure(tmp_path: Path) -> None:
    """Rows by dataset, files and the last success after an export; a failed export counts a
    failure and keeps the last success's time."""
    assert subprocess.run([sys.executable, "-m", "syncstream.write", *store(tmp_path), "-q", "--no-sync"],
                          check=False, cwd=tmp_path).returncode == 0  # fmt: skip
    metrics = tmp_path / "textfile" / "syncstream_export.prom"
    export = [
        sys.executable,
        "-m",
        "syncstream.export",
        *store(tmp_path),
        "-q",
        "--metrics-file",
        str(metrics),
    ]
    done = subprocess.run(
        [*export, "--out", str(tmp_path / "out")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    text = metrics.read_text()
    assert 'syncstream_export_rows_total{dataset="study_user_activity/post"} 4.0' in text
    assert "syncstream_export_files_total 15.0" in text
    assert "syncstream_export_last_run_success 1.0" in text
    last = re.search(r"^syncstream_export_last_success_timestamp_seconds (\S+)$", text, re.MULTILINE)
    assert last is not None and abs(float(last.group(1)) - time.time()) < 60
    (tmp_path / "not-a-store").write_text("a text file, not SQLite")
    broken = [sys.executable, "-m", "syncstream.export", "--cache-dir", str(tmp_path / "cache"), "-q",
              "--state", str(tmp_path / "not-a-store"), "--metrics-file", str(metrics), "--out", str(tmp_path / "out")]  # fmt: skip
    failed = subprocess.run(broken, capture_output=True, text=True, check=False)
    assert failed.returncode == 2 and "not a syncstream state store" in failed.stderr
    text = metrics.read_text()
    assert "syncstream_export_failures_total 1.0" in text and "syncstream_export_last_run_success 0.0" in text
    assert f"syncstream_export_last_success_timestamp_seconds {last.group(1)}" in text
    assert not list(metrics.parent.glob("*.tmp*"))


def test_every_runs_exports_until_sigterm(tmp_path: Path) -> None:
    """--every exports in a loop, printing each run's summary, and stops cleanly on SIGTERM."""
    assert subprocess.run([sys.executable, "-m", "syncstream.write", *store(tmp_path), "-q", "--no-sync"],
                          check=False, cwd=tmp_path).returncode == 0  # fmt: skip
    command = [sys.executable, "-m", "syncstream.export", *store(tmp_path), "-q", "--out", str(tmp_path / "out"),
               "--every", "0.3s", "--inline-parquet"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as loop:
        assert loop.stdout is not None
        lines = [loop.stdout.readline() for _ in range(30)]
        wait = [line for line in lines if line.startswith("exported")]
        loop.send_signal(signal.SIGTERM)
        rest, _ = loop.communicate(timeout=30)
    assert loop.returncode == 0
    runs = [line for line in [*lines, *rest.splitlines()] if line.startswith("exported")]
    assert len(runs) >= 2 and wait[0].startswith("exported 15 rows") and runs[1].startswith("exported 0 rows")


def test_every_compacts_on_its_own_schedule(tmp_path: Path) -> None:
    """--compact-every runs a compaction after an export once per period; the metrics file
    gains its figures and the export's table commits."""
    assert subprocess.run([sys.executable, "-m", "syncstream.write", *store(tmp_path), "-q", "--no-sync"],
                          check=False, cwd=tmp_path).returncode == 0  # fmt: skip
    metrics = tmp_path / "export.prom"
    command = [sys.executable, "-m", "syncstream.export", *store(tmp_path), "-q", "--out", str(tmp_path / "out"),
               "--every", "0.2s", "--compact-every", "0.3s", "--metrics-file", str(metrics)]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as loop:
        assert loop.stdout is not None
        while not (line := loop.stdout.readline()).startswith("compacted") and line:
            pass
        loop.send_signal(signal.SIGTERM)
        loop.communicate(timeout=60)
    assert loop.returncode == 0 and line.startswith("compacted 0 partitions of 6 tables")
    text = metrics.read_text()
    stamp = re.search(r"^syncstream_compact_last_success_timestamp_seconds (\S+)$", text, re.MULTILINE)
    assert stamp is not None and float(stamp.group(1)) > 0
    assert "syncstream_compact_files_removed 0.0" in text and "syncstream_export_table_commits" in text


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("15m", 900.0), ("1h", 3600.0), ("1d", 86400.0)]
)
def test_durations(text: str, seconds: float) -> None:
    """--every takes seconds, minutes, hours or days."""
    assert parse_duration(text) == seconds


def _units(tmp_path: Path) -> list[str]:
    """deploy/'s units, with this machine's python, copied under tmp_path."""
    for unit in (ROOT / "deploy").iterdir():
        if unit.suffix in (".service", ".timer"):
            text = unit.read_text().replace("/opt/syncstream/.venv/bin/python", sys.executable)
            (tmp_path / unit.name).write_text(text)
    return sorted(str(p) for p in tmp_path.iterdir())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_deploy_units_verify(tmp_path: Path) -> None:
    """The systemd units in deploy/ pass systemd-analyze verify (with this machine's python)."""
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *_units(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_deploy_units_are_hardened_and_do_not_restart_on_bad_input(tmp_path: Path) -> None:
    """Each service scores 2.0 or less ("OK") in systemd-analyze security; the writer does not
    restart after exit 2 (bad input); both wait for the network and have their state directory."""
    for unit in _units(tmp_path):
        if not unit.endswith(".service"):
            continue
        result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20", "--no-pager",
                                 unit], capture_output=True, text=True, check=False)  # fmt: skip
        assert result.returncode == 0, result.stdout[-300:]
        text = Path(unit).read_text()
        for line in ("Wants=network-online.target", "After=network-online.target", "StateDirectory=syncstream",
                     "User=syncstream", "NoNewPrivileges=yes", "ProtectSystem=strict"):  # fmt: skip
            assert f"\n{line}\n" in text, (unit, line)
    assert "\nRestartPreventExitStatus=2\n" in (ROOT / "deploy" / "syncstream-write.service").read_text()


def test_every_unit_runs_its_command_from_the_config_file() -> None:
    """Each service runs ``syncstream COMMAND --config`` the shipped file; compact and snapshot
    have their timers, each timer its service."""
    services = sorted((ROOT / "deploy").glob("*.service"))
    assert [s.stem for s in services] == [
        "syncstream-compact", "syncstream-export", "syncstream-snapshot", "syncstream-write"
    ]  # fmt: skip
    for service in services:
        command = service.stem.removeprefix("syncstream-")
        assert f"-m syncstream {command} " in service.read_text(), service
        assert "--config /etc/syncstream/syncstream.toml" in service.read_text(), service
    timers = sorted(t.stem for t in (ROOT / "deploy").glob("*.timer"))
    assert timers == ["syncstream-compact", "syncstream-export", "syncstream-snapshot"]


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_deploy_creates_the_user_the_units_run_as(tmp_path: Path) -> None:
    """deploy/syncstream.sysusers creates the syncstream user (checked in a scratch root)."""
    result = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", "--dry-run",
                             str(ROOT / "deploy" / "syncstream.sysusers")], capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Creating user 'syncstream'" in result.stdout + result.stderr


def test_export_metrics_are_counters_over_runs_with_every_dataset(tmp_path: Path) -> None:
    """syncstream_export_rows_total adds up over exports; every dataset has its series from the
    first export on, also in runs without its rows; no _created series."""
    metrics = tmp_path / "export.prom"
    for name in ("a", "b", "a"):  # two caches of the sample, then one with nothing left
        root = tmp_path / name
        write = [sys.executable, "-m", "syncstream.write", *store(root), "-q", "--no-sync"]
        assert subprocess.run(write, check=False, cwd=tmp_path).returncode == 0
        export = [sys.executable, "-m", "syncstream.export", *store(root), "-q", "--out", str(root / "out"),
                  "--metrics-file", str(metrics)]  # fmt: skip
        assert subprocess.run(export, check=False).returncode == 0
    text = metrics.read_text()
    assert 'syncstream_export_rows_total{dataset="study_user_activity/post"} 8.0' in text
    assert 'syncstream_export_rows_total{dataset="study_user_activity/quote_of_user_post"} 0.0' in text
    assert "syncstream_export_files_total 30.0" in text
    assert "_created" not in text
    series = re.findall(r'^syncstream_export_rows_total\{dataset="([^"]+)"\}', text, re.MULTILINE)
    assert len(series) == len(set(series)) >= 10


def test_unwritable_metrics_file_is_an_error_line_after_the_summary(tmp_path: Path) -> None:
    """An export whose metrics file cannot be written prints its summary, then one error line,
    and exits 1; with --every the loop goes on, and exits 1 when its last run failed."""
    assert subprocess.run([sys.executable, "-m", "syncstream.write", *store(tmp_path), "-q", "--no-sync"],
                          check=False, cwd=tmp_path).returncode == 0  # fmt: skip
    (tmp_path / "a-file").write_text("not a directory")
    export = [sys.executable, "-m", "syncstream.export", *store(tmp_path), "-q", "--out", str(tmp_path / "out"),
              "--metrics-file", str(tmp_path / "a-file" / "export.prom")]  # fmt: skip
    once = subprocess.run(export, capture_output=True, text=True, check=False)
    assert once.returncode == 1
    assert once.stdout.startswith("exported 15 rows")
    [line] = once.stderr.splitlines()
    assert line.startswith("error: cannot write the metrics file ") and "the export itself succeeded" in line
    with subprocess.Popen([*export, "--every", "0.1s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as loop:  # fmt: skip
        assert loop.stdout is not None
        runs = 0
        while runs < 3:
            runs += loop.stdout.readline().startswith("exported")
        loop.send_signal(signal.SIGTERM)
        _, err = loop.communicate(timeout=30)
    assert loop.returncode == 1
    assert "Traceback" not in err and err.count("error: cannot write the metrics file") >= 3


def _server_threads() -> int:
    return sum("process_request_thread" in thread.name for thread in threading.enumerate())


def test_idle_half_requests_do_not_pin_a_thread_each(tmp_path: Path) -> None:
    """200 clients that send half a request and wait hold at most max_connections threads; the
    others are closed at once, the held ones when their socket times out; then a scrape works."""
    clients: list[socket.socket] = []
    with (
        setup_cache_write_system(tmp_path / "cache", tmp_path / "s.sqlite") as context,
        MetricsServer(
            CacheWriter(context), ("127.0.0.1", 0), request_timeout=0.5, max_connections=16
        ) as server,
        contextlib.ExitStack() as sockets,
    ):
        for _ in range(200):
            client = sockets.enter_context(
                socket.create_connection(("127.0.0.1", server.address[1]), timeout=30)
            )
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            clients.append(client)
        closed: set[int] = set()

        def closed_by_the_server(count: int) -> bool:
            readable, _, _ = select.select(
                [c for i, c in enumerate(clients) if i not in closed], [], [], 0.05
            )
            for client in readable:
                try:
                    gone = client.recv(1) == b""
                except ConnectionResetError:  # closed with the request unread
                    gone = True
                if gone:
                    closed.add(clients.index(client))
            assert _server_threads() <= 16
            return len(closed) >= count

        wait_for(lambda: closed_by_the_server(184))  # refused: no thread for them
        wait_for(lambda: closed_by_the_server(200))  # timed out
        assert get(f"http://127.0.0.1:{server.address[1]}/metrics")[0] == 200


def test_cuts_and_stalls_are_counted_and_logged_as_reconnects(tmp_path: Path) -> None:
    """A transport cut without a close frame and a stalled socket (both retried by the SDK's
    client itself) show in syncstream_reconnects_total and as structured reconnect events."""
    relay = ReplayRelay(corpus_frames(), [parse_fault("cut:30"), parse_fault("stall:20")])
    port = free_port()
    with LoopbackRelay(relay) as loopback:
        command = [sys.executable, "-m", "syncstream.write", *store(tmp_path), *USERS, "--no-sync", "--relay",
                   loopback.url, "--recv-timeout", "0.5", "--reconnect-delay", "0.05", "--log-format", "json",
                   "--metrics", f"127.0.0.1:{port}"]  # fmt: skip
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as writer:
            try:
                base = f"http://127.0.0.1:{port}/metrics"
                wait_for(lambda: _answers(base) and 'reason="stalled"' in get(base)[1])
                text = get(base)[1]
            finally:
                writer.send_signal(signal.SIGTERM)
                out, err = writer.communicate(timeout=30)
    assert writer.returncode == 0, err
    assert re.search(r'syncstream_reconnects_total\{reason="ConnectionClosedError"\} 1\.0', text), text
    assert re.search(r'syncstream_reconnects_total\{reason="stalled"\} [1-9]', text)
    events = [json.loads(line) for line in err.splitlines()]
    reconnects = [event for event in events if event["event"] == "reconnect"]
    assert {"ConnectionClosedError", "stalled"} <= {event["reason"] for event in reconnects}
    assert all(isinstance(event["seq"], int) and event["delay_seconds"] >= 0 for event in reconnects)
    assert "reconnects:\n  ConnectionClosedError: 1\n  stalled: " in out
