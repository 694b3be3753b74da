"""SIGKILL exports at chosen moments (claiming, writing Parquet, removing) and at random, beside a
running writer; then export again: every row exactly once, the cache empty of exported files."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb

from tests.helpers import tree, write_replay, write_users
from tests.test_durability import OTHER, STUDY, frames

# Run inside the export subprocess: wrap one step of the protocol so that the process kills
# itself with SIGKILL at the Nth call, exactly as a crash there would.
INJECT = textwrap.dedent(
    """
    import os, signal, sys
    import syncstream.export.batch as batch
    from syncstream.export.__main__ import main

    mode, after = sys.argv[1], int(sys.argv[2])
    calls = [0]

    def tick():
        calls[0] += 1
        if calls[0] > after:
            os.kill(os.getpid(), signal.SIGKILL)

    if mode == "claim":
        real_rename = os.rename
        def rename(src, dst):
            if "/.export/" in dst:
                tick()
            real_rename(src, dst)
        batch.os.rename = rename
    elif mode in ("write", "remove"):  # the helper's steps: start it through HELPER_INJECT
        sys.executable = sys.argv[3]
        del sys.argv[3]
    raise SystemExit(main(sys.argv[3:]))
    """
)

# Run as the export's helper (``HELPER -m module parent out``), which writes the Parquet files and
# removes committed chunks' cache files: SIGKILL the export (the helper dies with it) right after
# the Nth Parquet file is written under its temporary name, or the Nth cache file is removed.
HELPER_INJECT = textwrap.dedent(
    """
    import os, runpy, signal, sys
    import syncstream.export.storage as storage

    mode, after = os.environ["KILL_MODE"], int(os.environ["KILL_AFTER"])
    calls = [0]

    def tick():
        calls[0] += 1
        if calls[0] > after:
            os.kill(os.getppid(), signal.SIGKILL)

    if mode == "write":
        real_write = storage.pq.write_table
        def write_table(*args, **kwargs):
            real_write(*args, **kwargs)
            tick()  # the file exists under its temporary name, not yet moved into place
        storage.pq.write_table = write_table
    else:
        real_unlink = os.unlink
        def unlink(path, *args, **kwargs):
            real_unlink(path, *args, **kwargs)
            if "/.export/" in str(path) and str(path).endswith(".json"):
                tick()  # this file is gone, the rest of the committed chunk is not
        os.unlink = unlink
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    """
)


def test_killed_exports_beside_a_running_writer_end_exactly_once(tmp_path: Path) -> None:
    """Eight exports killed beside a writer, then one clean export: each row once, cache empty."""
    count = 20_000
    replay = write_replay(tmp_path / "replay.bin", frames(count))
    study = write_users(tmp_path / "study.txt", [STUDY])
    injector = tmp_path / "inject.py"
    injector.write_text(INJECT)
    (tmp_path / "helper_inject.py").write_text(HELPER_INJECT)
    helper = tmp_path / "helper"
    helper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "helper_inject.py"}" "$@"\n')
    helper.chmod(0o755)
    cache, state, out = tmp_path / "cache", tmp_path / "state.sqlite", tmp_path / "out"
    common = ["--cache-dir", str(cache), "--state", str(state), "-q"]
    export_args = [*common, "--out", str(out), "--batch-files", "700"]
    # The writer consumes a loopback relay paced like the live firehose, so that it is still
    # writing, whatever this machine's speed, while the exports are killed beside it.
    relay = subprocess.Popen(
        [sys.executable, "-m", "syncstream.relay", "--replay", str(replay), "--rate", "1500"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert relay.stdout is not None
    url = relay.stdout.readline().split(" at ")[1].strip()
    writer = subprocess.Popen(
        [sys.executable, "-m", "syncstream.write", *common, "--study-users", str(study),
         "--relay", url, "--idle-exit", "3", "--flush-frames", "100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    rng = random.Random(11)
    beside_writer = killed = 0
    try:
        while not cache.is_dir():
            time.sleep(0.05)
        for mode, after in [
            ("claim", 2),  # the .claim file and one directory moved, the next not
            ("write", 1),  # one Parquet file written under its temporary name, not moved
            ("remove", 300),  # a committed chunk, 300 of its files removed
            ("claim", 1),
            ("write", 3),
            ("remove", 1),
            ("random", 0),
            ("random", 0),
        ]:
            time.sleep(0.3)
            deadline = time.monotonic() + 30
            while len(tree(cache)) < 50 and writer.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)  # something to claim in at least two handler directories
            command = [sys.executable, str(injector), mode, str(after)]
            command += [str(helper)] if mode in ("write", "remove") else []
            environment = {**os.environ, "KILL_MODE": mode, "KILL_AFTER": str(after)}
            with subprocess.Popen(
                [*command, *export_args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=environment,
            ) as export:
                if mode == "random":
                    time.sleep(rng.uniform(0.6, 1.5))
                    export.kill()
                returncode = export.wait()
            beside_writer += writer.poll() is None
            killed += returncode == -9
            assert returncode in (0, -9), f"{mode}: exit {returncode}"
            if mode != "random":
                assert returncode == -9, f"the export was not killed while in its {mode} step"
    finally:
        try:
            assert writer.wait(timeout=300) == 0
        finally:
            relay.terminate()
            relay.wait(timeout=30)
            relay.stdout.close()
    assert beside_writer >= 4, "the writer finished before most exports: make the replay longer"
    assert killed >= 6

    final = subprocess.run(
        [sys.executable, "-m", "syncstream.export", *export_args], check=False, capture_output=True, text=True
    )
    assert final.returncode == 0, final.stderr

    with duckdb.connect() as db:
        rows = db.execute(
            f"SELECT record_type, uri, operation, count(*) FROM read_parquet('{out}/*/*/*/*.parquet', "
            "hive_partitioning = true, union_by_name = true) GROUP BY ALL"
        ).fetchall()
    assert max(n for *_, n in rows) == 1, "a row was exported twice"
    expected = set()
    for i in range(count):
        if i % 3 == 2:
            expected.add(("like_on_user_post", f"at://{OTHER}/app.bsky.feed.like/l{i}", "create"))
        else:
            expected.add(("post", f"at://{STUDY}/app.bsky.feed.post/p{i}", "create"))
    assert {tuple(r[:3]) for r in rows} == expected
    assert tree(cache) == set()
    assert sorted(p.name for p in (cache / ".export").iterdir()) == []
    assert not list(out.rglob(".*.tmp"))
