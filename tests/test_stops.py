"""Every stop per the docs: SIGINT, SIGTERM and SIGHUP, sent to a command's whole process group
(as a Ctrl-C, a service manager and a terminal's hangup send them) at its start, in the middle
of its work (at a named failpoint) and at its end, for every command. Each ends with the exit
status its docs give (0 after a clean stop, 1 when it stopped early), at most one ``error:``
line, no traceback, never killed by the signal, and what it did is whole."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from syncstream.failpoints import ENV
from syncstream.firehose.encode import OpSpec
from syncstream.servers.relay import LoopbackRelay, ReplayRelay
from syncstream.store import StateStore
from tests.helpers import commit, like, post, tree, wait_for, write_replay, write_users
from tests.tables import all_rows

STUDY = "did:plc:studystudystudystudystu"
OTHER = "did:plc:otherotherotherotherothe"
POST_URI = f"at://{STUDY}/app.bsky.feed.post/p{{}}"
COUNT = 400  # frames: posts by the study user, likes of them by another account
SIGNALS = {"int": signal.SIGINT, "term": signal.SIGTERM, "hup": signal.SIGHUP}


def frames(first: int, count: int) -> list[bytes]:
    out = []
    for i in range(first, first + count):
        if i % 2:
            out.append(
                commit(
                    2**35 + i,
                    OTHER,
                    OpSpec("create", f"app.bsky.feed.like/l{i}", like(POST_URI.format(i - 1))),
                )
            )
        else:
            out.append(
                commit(2**35 + i, STUDY, OpSpec("create", f"app.bsky.feed.post/p{i}", post(f"post {i}")))
            )
    return out


def python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def store(root: Path) -> list[str]:
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite")]


def plain(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != ENV}
    done = subprocess.run(
        arguments, capture_output=True, text=True, env=environment, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done


@cache
def pristine(base: str) -> Path:
    """A study's directory: the first half of the frames written and exported, the second half
    written and not yet exported (two files per table's partition once it is)."""
    root = Path(base) / "pristine"
    root.mkdir(parents=True)
    write_users(root / "study.txt", [STUDY])
    write_replay(root / "first.bin", frames(0, COUNT // 2))
    write_replay(root / "second.bin", frames(COUNT // 2, COUNT // 2))
    write_replay(root / "all.bin", frames(0, COUNT))
    for replay in ("first.bin", "second.bin"):
        plain(python("syncstream.write", *store(root), "-q", "--no-sync", "--replay", str(root / replay),
                     "--study-users", str(root / "study.txt"), "--flush-frames", "50"))  # fmt: skip
        if replay == "first.bin":
            plain(python("syncstream.export", *store(root), "-q", "--out", str(root / "out")))
    return root


@cache
def exported_twice(base: str) -> Path:
    """The pristine study with its second half exported too."""
    root = Path(base) / "exported"
    copy_study(pristine(base), root)
    plain(python("syncstream.export", *store(root), "-q", "--out", str(root / "out")))
    return root


def copy_study(source: Path, root: Path) -> None:
    """A study's directory copied whole; its store's catalog follows the copy (as an operator
    moving a study does), so a purge finds the copy's output, not the original's."""
    shutil.copytree(source, root)
    with StateStore(root / "s.sqlite", create=False) as state:
        state.catalog.relocate(str(source), str(root))


def rows(root: Path) -> list[str]:
    """Every row's URI, of every table at its latest version."""
    return sorted(row["uri"] for table in all_rows(root / "out").values() for row in table)


def every_uri(count: int = COUNT) -> list[str]:
    """The URI of each of the first ``count`` frames' records, sorted."""
    return sorted(
        (POST_URI.format(i) if i % 2 == 0 else f"at://{OTHER}/app.bsky.feed.like/l{i}") for i in range(count)
    )


def write_check(root: Path, moment: str) -> None:
    """The stored cursor covers exactly the files in the cache: a rerun writes the rest, and the
    cache then holds what one plain replay of every frame writes."""
    for where in (root / "w", root / "reference"):
        plain(python("syncstream.write", *store(where), "-q", "--no-sync", "--replay", str(root / "all.bin"),
                     "--study-users", str(root / "study.txt")))  # fmt: skip
    assert tree(root / "w" / "cache") == tree(root / "reference" / "cache") != set()


def export_check(root: Path, moment: str) -> None:
    """The run under way finished: every row exported once, the cache emptied."""
    assert rows(root) == every_uri()
    assert tree(root / "cache") == set()


def every_check(root: Path, moment: str) -> None:
    """As ``export_check``; stopped before its first run began, ``--every`` runs none."""
    if moment == "start":
        assert rows(root) == every_uri(COUNT // 2)
        assert tree(root / "cache") != set()
    else:
        export_check(root, moment)


def purge_check(root: Path, moment: str) -> None:
    """The purge finished: no row or cache file of the account is left, the study user's
    exported rows are whole, and no purge is recorded unfinished."""
    assert rows(root) == sorted(POST_URI.format(i) for i in range(0, COUNT // 2, 2))
    assert not [path for path in tree(root / "cache") if OTHER in path]
    listed = plain(python("syncstream.purge", *store(root), "--list"))
    assert "unfinished" not in listed.stdout and OTHER in listed.stdout


def compact_check(root: Path, moment: str) -> None:
    """Whatever was compacted, every row is there once; a rerun compacts the rest."""
    assert rows(root) == every_uri()
    plain(python("syncstream.lake.compact", "-q", "--out", str(root / "out"), "--older-than-days", "0"))
    assert rows(root) == every_uri()


def backfill_check(root: Path, moment: str) -> None:
    """A rerun backfills what the stop abandoned: the account is recorded done."""
    plain(backfill_command(root))
    with StateStore(root / "s.sqlite", create=False) as state:
        assert state.backfills.recorded()[STUDY].status == "done"


def snapshot_check(root: Path, moment: str) -> None:
    """The copy finished, with its manifest."""
    assert (root / "snap" / "manifest.json").is_file()


@cache
def repository() -> bytes:
    from benchmarks.repos import build_repo

    return build_repo(STUDY, 400)


def backfill_command(root: Path) -> list[str]:
    return python("syncstream.backfill", *store(root), "-q", "--study-users", str(root / "study.txt"),
                  "--plc-url", (root / "pds.url").read_text(), "--scratch-dir", str(root))  # fmt: skip


def pds_command(root: Path) -> list[str]:
    (root / "repo.car").write_bytes(repository())
    return python("syncstream.servers.pds", "--repo", str(root / "repo.car"))


def replay_writer(root: Path) -> list[str]:
    return python("syncstream.write", *store(root / "w"), "-q", "--no-sync", "--replay", str(root / "all.bin"),
                  "--study-users", str(root / "study.txt"), "--flush-frames", "50")  # fmt: skip


def live_writer(root: Path) -> list[str]:
    return python("syncstream.write", *store(root / "w"), "-q", "--no-sync", "--relay", (root / "relay.url").read_text(),
                  "--study-users", str(root / "study.txt"), "--flush-frames", "50", "--idle-exit", "1")  # fmt: skip


def export_command(root: Path, *extra: str) -> list[str]:
    return python("syncstream.export", *store(root), "-q", "--out", str(root / "out"), *extra)


@dataclass(frozen=True)
class Case:
    """A command run in a copy of a study directory: its arguments, the failpoint in the middle
    of its work (None for a server: the test signals it once it serves), its exit status after a
    stop at each moment, whether it ends by itself (``export --every`` does not: the test stops
    it once its first run is done), and a check of what it left."""

    base: Callable[[str], Path]
    command: Callable[[Path], list[str]]
    middle: str | None
    check: Callable[[Path, str], None] | None = None  # given the moment
    stopped_early: tuple[str, ...] = ()  # the moments after which it exits 1
    ends_alone: bool = True
    needs: str | None = None  # "relay" or "pds": served by the test, its URL in the directory


CASES = {
    "write": Case(pristine, replay_writer, "writer/write.batch_sent:2", check=write_check),
    "write-live": Case(pristine, live_writer, "writer/write.batch_sent:2", needs="relay"),
    "export": Case(pristine, export_command, "export-helper/export.parquet_temp:1", check=export_check),
    "export-every": Case(pristine, lambda root: export_command(root, "--every", "1h"),
                         "export-helper/export.parquet_temp:1", check=every_check, ends_alone=False),
    "purge": Case(pristine, lambda root: python("syncstream.purge", *store(root), "-q", "--out", str(root / "out"),
                                                "--did", OTHER), "purge.table_deleted:1", check=purge_check),
    "backfill": Case(pristine, backfill_command, "backfill.batch_written:1", check=backfill_check, needs="pds"),
    "compact": Case(exported_twice, lambda root: python("syncstream.lake.compact", "--out", str(root / "out"),
                                                        "--older-than-days", "0"),
                    "compact.partition_done:1", check=compact_check, stopped_early=("start", "middle")),
    "snapshot": Case(exported_twice, lambda root: python("syncstream.lake.snapshot", "--state", str(root / "s.sqlite"), "--out", str(root / "out"),
                                                         "--to", str(root / "snap")),
                     "snapshot.dataset_copied:1", check=snapshot_check),
    "relay": Case(pristine, lambda root: python("syncstream.servers.relay", "--replay", str(root / "all.bin")), None),
    "pds": Case(pristine, pds_command, None),
}  # fmt: skip


@contextlib.contextmanager
def served(case: Case, root: Path) -> Iterator[None]:
    """The relay or PDS a case needs, on 127.0.0.1, its URL written in ``root``."""
    if case.needs == "relay":
        with LoopbackRelay(ReplayRelay(frames(0, COUNT))) as relay:
            (root / "relay.url").write_text(relay.url)
            yield
    elif case.needs == "pds":
        from syncstream.servers.keys import REHEARSAL_SEED, SigningKey
        from syncstream.servers.pds import LoopbackPds

        with LoopbackPds({STUDY: repository()}, key=SigningKey(REHEARSAL_SEED)) as pds:
            (root / "pds.url").write_text(pds.url)
            yield
    else:
        yield


def stop(process: subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def run_stopped(case: Case, root: Path, signal_name: str, moment: str) -> tuple[int, str, str]:
    """Run the case's command in a session of its own, stopped by ``signal_name`` at ``moment``:
    its exit status, stdout and stderr."""
    failpoint = {"start": "command.started:1", "middle": case.middle, "end": "command.finished:1"}[moment]
    environment = {k: v for k, v in os.environ.items() if k != ENV}
    if failpoint is not None:
        environment[ENV] = f"{failpoint}:{signal_name}"
    out, err = root / "stdout.txt", root / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(case.command(root), stdout=stdout, stderr=stderr, text=True, env=environment,
                                   start_new_session=True)  # fmt: skip
    try:
        if case.middle is None and moment != "start":  # a server: signalled once it serves
            wait_for(lambda: "serving" in out.read_text() or process.poll() is not None, "serving")
            stop(process, SIGNALS[signal_name] if moment == "middle" else signal.SIGTERM)
        if not case.ends_alone:
            wait_for(lambda: "exported" in out.read_text() or process.poll() is not None, "a run")
            stop(process, signal.SIGTERM)
        code = process.wait(timeout=120)
    finally:
        stop(process, signal.SIGKILL)
    return code, out.read_text(), err.read_text()


NAMES = list(SIGNALS)
# Every signal in the middle of each command's work; at its start and end, where a stop is a
# flag set before or after all of it, one signal each, turning through the three over the
# commands (a few seconds a case: the whole product would take minutes).
MATRIX = [
    pytest.param(name, signal_name, moment, id=f"{name}-{signal_name}-{moment}")
    for index, name in enumerate(CASES)
    for signal_name, moment in [
        (NAMES[index % 3], "start"),
        *((signal_name, "middle") for signal_name in NAMES),
        (NAMES[(index + 1) % 3], "end"),
    ]
]


@pytest.mark.parametrize(("name", "signal_name", "moment"), MATRIX)
def test_a_stop_at_any_moment_of_any_command_ends_as_documented(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, name: str, signal_name: str, moment: str
) -> None:
    """SIGINT, SIGTERM or SIGHUP to the command's whole group, at its start, in its work or at
    its end: the exit status its docs give, never death by the signal, no traceback, one
    ``error:`` line (the last) when it stopped early and none otherwise, and its work whole."""
    case = CASES[name]
    root = tmp_path / "study"
    copy_study(case.base(str(tmp_path_factory.getbasetemp())), root)
    with served(case, root):
        code, _, stderr = run_stopped(case, root, signal_name, moment)
        expected = 1 if moment in case.stopped_early else 0
        assert code == expected, stderr
        assert "Traceback" not in stderr
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert errors == (stderr.strip().splitlines()[-1:] if expected else [])
        if case.check is not None:
            case.check(root, moment)


@pytest.mark.parametrize("name", ["export", "snapshot", "compact"])
def test_a_stop_mid_work_ends_the_same_way_every_time(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, name: str
) -> None:
    """Five SIGTERMs in the middle of the same command's work, each from a fresh copy: the same
    exit status every time (pyarrow and delta-rs can abort a process at its exit, 134, when a
    scan thread outlives the interpreter; a stop must not make that likelier)."""
    case = CASES[name]
    codes = []
    for attempt in range(5):
        root = tmp_path / f"study{attempt}"
        copy_study(case.base(str(tmp_path_factory.getbasetemp())), root)
        codes.append(run_stopped(case, root, "term", "middle")[0])
    assert codes == [1 if "middle" in case.stopped_early else 0] * 5


@pytest.mark.parametrize("signal_name", list(SIGNALS))
def test_a_stop_in_the_live_writers_first_second_is_clean(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, signal_name: str
) -> None:
    """A signal sent to the live writer's group as soon as its state file exists (the cache and
    state open, the SDK still importing): SIGINT and SIGTERM end it with exit 0 and its summary,
    SIGHUP re-reads the user files and the stream goes on (before: death by each)."""
    root = tmp_path / "study"
    copy_study(pristine(str(tmp_path_factory.getbasetemp())), root)
    with LoopbackRelay(ReplayRelay(frames(0, COUNT))) as relay:
        (root / "relay.url").write_text(relay.url)
        environment = {k: v for k, v in os.environ.items() if k != ENV}
        process = subprocess.Popen(live_writer(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=environment, start_new_session=True)  # fmt: skip
        try:
            wait_for(lambda: (root / "w" / "s.sqlite").exists() or process.poll() is not None, "the state")
            stop(process, SIGNALS[signal_name])
            out, err = process.communicate(timeout=120)
        finally:
            stop(process, signal.SIGKILL)
    assert process.returncode == 0, err
    assert out.startswith("frames: ") and "Traceback" not in err and "error:" not in err
