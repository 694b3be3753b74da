"""One lock for the lake: a purge and a compaction of one output never interleave (each stopped
with SIGSTOP at a named failpoint while the other runs), and no file a killed run left that no
version of the log names outlives the next compaction or purge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from syncstream.errors import LakeLockedError
from syncstream.export.__main__ import main as export_main
from syncstream.firehose.encode import OpSpec
from syncstream.lake.delta import location
from syncstream.lake.lock import LakeLock
from syncstream.write.__main__ import main as write_main
from tests.helpers import commit, post, wait_for, write_args
from tests.tables import files_holding, table_rows, unnamed_files

POSTS = "study_user_activity/post"
STAYS = "did:plc:stays00000000000000000000"
LEAVES = "did:plc:leaves0000000000000000000"
RUNS, PER_RUN = 3, 20


def exported_three_times(root: Path, out: str | None = None) -> None:
    """Three export runs of both accounts' posts: three files in today's partition, each
    holding rows of both."""
    for run in range(RUNS):
        frames = [
            commit(
                1 + run * 100 + i * 2 + j,
                did,
                OpSpec("create", f"app.bsky.feed.post/3r{run}p{i}", post(f"{run}.{i}")),
            )
            for i in range(PER_RUN)
            for j, did in enumerate((STAYS, LEAVES))
        ]
        assert write_main(write_args(root, frames, [STAYS, LEAVES])) == 0
        assert export_main(export_args(root, out)) == 0


def export_args(root: Path, out: str | None = None) -> list[str]:
    store = ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite"), "-q"]
    return [*store, "--out", out or str(root / "out")]


def environment(failpoint: str | None) -> dict[str, str]:
    found = {k: v for k, v in os.environ.items() if k != "SYNCSTREAM_FAILPOINTS"}
    if failpoint is not None:
        found["SYNCSTREAM_FAILPOINTS"] = failpoint
    return found


def purge(root: Path, failpoint: str | None = None, out: str | None = None) -> subprocess.Popen[str]:
    arguments = ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite")]
    arguments += ["--out", out or str(root / "out"), "--did", LEAVES]
    return subprocess.Popen(
        [sys.executable, "-m", "syncstream.purge", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(failpoint),
    )


# The compaction as a process of its own, three days on, so that today's partition is closed.
COMPACT = textwrap.dedent(
    """
    import logging, sys, time
    from syncstream.failpoints import set_process
    from syncstream.lake.compact import CompactOptions, compact_tables
    from syncstream.registry.builtin import HANDLERS
    from syncstream.registry.handlers import datasets_of

    logging.basicConfig(level=logging.INFO)
    set_process("compact")
    options = CompactOptions(out=sys.argv[1])
    summary = compact_tables(options, datasets_of(HANDLERS).values(), now=time.time() + 3 * 86400)
    print(summary.partitions, summary.vacuumed)
    """
)


def compact(root: Path, failpoint: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", COMPACT, str(root / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(failpoint),
    )


def stopped(process: subprocess.Popen[str]) -> bool:
    """Whether the process is stopped (SIGSTOP), from its state in /proc."""
    with open(f"/proc/{process.pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


def waiting_or_done(process: subprocess.Popen[str], log: Path) -> bool:
    return process.poll() is not None or "waiting for the output" in log.read_text()


def check_outcome(root: Path) -> None:
    """Every row of the account that stays is there once; no file under the output, history
    included, holds a row of the one that left; none is a file the log does not name."""
    rows = table_rows(root / "out", POSTS)
    uris = sorted(row["uri"] for row in rows if row["author_did"] == STAYS)
    assert len(uris) == len(set(uris)) == RUNS * PER_RUN, "rows doubled or lost"
    assert [row for row in rows if row["author_did"] == LEAVES] == []
    assert files_holding(root / "out", LEAVES) == []
    assert unnamed_files(root / "out") == []


def test_a_compaction_waits_for_a_purge_stopped_before_its_commit(tmp_path: Path) -> None:
    """A purge stopped between rewriting a table's files and committing them holds the output:
    a compaction started meanwhile waits, and runs once the purge has finished."""
    exported_three_times(tmp_path)
    purging = purge(tmp_path, "purge/purge.table_rewritten:1:stop")
    wait_for(lambda: purging.poll() is not None or stopped(purging), "the purge stopped")
    assert purging.poll() is None, purging.communicate()
    log = tmp_path / "compact.log"
    with log.open("w") as sink:
        compacting = subprocess.Popen(
            [sys.executable, "-c", COMPACT, str(tmp_path / "out")], stderr=sink, stdout=subprocess.PIPE,
            text=True, env=environment(None),
        )  # fmt: skip
        wait_for(lambda: waiting_or_done(compacting, log), "the compaction waiting or done")
        os.kill(purging.pid, signal.SIGCONT)
        _, error = purging.communicate(timeout=120)
        assert purging.returncode == 0, error
        compacted, _ = compacting.communicate(timeout=120)
    assert compacting.returncode == 0, log.read_text()
    assert compacted.split()[0] == "1"  # the partition compacted, after the purge
    check_outcome(tmp_path)


def test_a_purge_waits_for_a_compaction_stopped_after_reading(tmp_path: Path) -> None:
    """A compaction stopped after reading a table holds the output: a purge started meanwhile
    waits, and then removes the account's rows from the compacted files too."""
    exported_three_times(tmp_path)
    compacting = compact(tmp_path, "compact/compact.table_read:1:stop")
    wait_for(lambda: compacting.poll() is not None or stopped(compacting), "the compaction stopped")
    assert compacting.poll() is None, compacting.communicate()
    purging = purge(tmp_path)
    wait_for(
        lambda: purging.poll() is not None or "waiting for the output" in _peek(purging),
        "the purge waiting or done",
    )
    os.kill(compacting.pid, signal.SIGCONT)
    _, error = compacting.communicate(timeout=120)
    assert compacting.returncode == 0, error
    _, error = purging.communicate(timeout=120)
    assert purging.returncode == 0, error
    check_outcome(tmp_path)


def _peek(process: subprocess.Popen[str]) -> str:
    """The process's stderr so far (one line at a time: it waits on a lock and says so first)."""
    assert process.stderr is not None
    os.set_blocking(process.stderr.fileno(), False)
    return process.stderr.readline() or ""


def test_a_killed_purges_files_go_with_the_next_compaction(tmp_path: Path) -> None:
    """A purge killed after rewriting a table's files, before committing them, leaves files no
    version of the log names; the next compaction removes them, and the purge finished
    afterwards leaves none either."""
    exported_three_times(tmp_path)
    killed = purge(tmp_path, "purge/purge.table_rewritten:1:kill")
    killed.communicate(timeout=120)
    assert killed.returncode == -9
    assert unnamed_files(tmp_path / "out") != []  # the rewritten files, uncommitted
    compacting = compact(tmp_path)
    _, error = compacting.communicate(timeout=120)
    assert compacting.returncode == 0, error
    assert unnamed_files(tmp_path / "out") == []
    finishing = purge(tmp_path)
    _, error = finishing.communicate(timeout=120)
    assert finishing.returncode == 0, error
    check_outcome(tmp_path)


def test_the_lock_is_refused_while_another_process_holds_it(tmp_path: Path) -> None:
    """``wait=False`` beside a holder in another process raises, naming the holder; the lock
    is free again once the holder has exited, and re-entrant within a process."""
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom syncstream.lake.lock import LakeLock\n"
         "with LakeLock(sys.argv[1], what='the holder'):\n    print('held', flush=True)\n    sys.stdin.read()\n",
         str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    with pytest.raises(LakeLockedError, match="the holder"), LakeLock(str(out), wait=False):
        pass
    holder.communicate("")
    with LakeLock(str(out), wait=False), LakeLock(str(out), wait=False):
        pass


def s3_lake(s3_endpoint: str) -> str:
    filesystem, _ = pafs.FileSystem.from_uri(f"s3://lake?{s3_endpoint}&allow_bucket_creation=true")
    filesystem.create_dir("lake")
    return f"s3://lake/study?{s3_endpoint}"


def test_an_s3_lease_is_refused_while_held_and_taken_once_freed(tmp_path: Path, s3_endpoint: str) -> None:
    """On S3 the lock is a lease: refused (naming the holder) while another process holds it,
    taken once it is freed; re-entrant within a process."""
    out = s3_lake(s3_endpoint)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom syncstream.lake.lock import LakeLock\n"
         "with LakeLock(sys.argv[1], what='the holder'):\n    print('held', flush=True)\n    sys.stdin.read()\n",
         out],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    with pytest.raises(LakeLockedError, match="the holder"), LakeLock(out, wait=False):
        pass
    holder.communicate("")
    assert holder.returncode == 0
    with LakeLock(out, wait=False), LakeLock(out, wait=False):
        pass


def test_on_s3_a_compaction_waits_for_a_stopped_purge(tmp_path: Path, s3_endpoint: str) -> None:
    """The purge stopped before its commit holds the S3 lake's lease: a compaction waits for
    it; afterwards every row that stays is there once and no object holds the purged rows."""
    out = s3_lake(s3_endpoint)
    exported_three_times(tmp_path, out)
    purging = purge(tmp_path, "purge/purge.table_rewritten:1:stop", out)
    wait_for(lambda: purging.poll() is not None or stopped(purging), "the purge stopped")
    assert purging.poll() is None, purging.communicate()
    log = tmp_path / "compact.log"
    with log.open("w") as sink:
        compacting = subprocess.Popen(
            [sys.executable, "-c", COMPACT, out], stderr=sink, stdout=subprocess.PIPE, text=True,
            env=environment(None),
        )  # fmt: skip
        wait_for(lambda: waiting_or_done(compacting, log), "the compaction waiting or done")
        os.kill(purging.pid, signal.SIGCONT)
        _, error = purging.communicate(timeout=120)
        assert purging.returncode == 0, error
        compacting.communicate(timeout=120)
    assert compacting.returncode == 0, log.read_text()
    where = location(out, POSTS)
    table = DeltaTable(where.uri, storage_options=where.storage_options)
    rows = table.to_pyarrow_dataset().to_table(columns=["uri", "author_did"], use_threads=False).to_pylist()
    del table
    uris = [row["uri"] for row in rows if row["author_did"] == STAYS]
    assert len(uris) == len(set(uris)) == RUNS * PER_RUN
    filesystem, base = pafs.FileSystem.from_uri(out)
    objects = filesystem.get_file_info(pafs.FileSelector(f"{base}/{POSTS}", recursive=True))
    holding = [
        info.path
        for info in objects
        if info.path.endswith(".parquet")
        and "/_delta_log/" not in info.path
        and LEAVES
        in pq.read_table(info.path, columns=["author_did"], filesystem=filesystem)
        .column("author_did")
        .to_pylist()
    ]
    assert holding == []


def test_a_purge_whose_table_changed_under_it_reads_it_again(tmp_path: Path) -> None:
    """A commit that came between a purge's reading and its commit, from a command that did
    not take the output's lock (a compaction by another tool here), makes the purge's commit
    fail and the purge read and rewrite the table again: no row doubled, none of the
    account's left, no file the log does not name."""
    exported_three_times(tmp_path)
    purging = purge(tmp_path, "purge/purge.table_rewritten:1:stop")
    wait_for(lambda: purging.poll() is not None or stopped(purging), "the purge stopped")
    assert purging.poll() is None, purging.communicate()
    table = DeltaTable(str(tmp_path / "out" / POSTS))
    assert table.optimize.compact()["numFilesRemoved"] == RUNS  # beside the lock
    del table
    os.kill(purging.pid, signal.SIGCONT)
    _, error = purging.communicate(timeout=120)
    assert purging.returncode == 0, error
    check_outcome(tmp_path)
