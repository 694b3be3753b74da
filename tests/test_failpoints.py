"""The failpoint matrix: every failpoint of both protocols, in every process it fires in, by kill
and by raise; after each, a plain rerun and a plain export give every row exactly once and an
empty cache. No sleeps: each crash happens at a named step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from syncstream.errors import ConfigError
from syncstream.failpoints import POINTS, parse_spec
from syncstream.firehose.encode import OpSpec
from syncstream.lake.study_record import RECORD_TABLES
from syncstream.staging import Step
from syncstream.store import StateStore
from tests.helpers import commit, like, post, tree, write_replay, write_users
from tests.tables import connect, stray_files, table_dirs, table_rows

STUDY = "did:plc:studystudystudystudystu"
OTHER = "did:plc:otherotherotherotherothe"
FIRST_SEQ = 2**35
COUNT = 600
POST_URI = f"at://{STUDY}/app.bsky.feed.post/p{{}}"


def frames() -> list[bytes]:
    """Posts by a study user, likes of them by another account, and deletes of some posts."""
    out = []
    for i in range(COUNT):
        seq = FIRST_SEQ + i
        if i % 10 == 9:
            out.append(commit(seq, STUDY, OpSpec("delete", f"app.bsky.feed.post/p{i - 9}")))
        elif i % 3 == 2:
            subject = POST_URI.format(i - 1)
            out.append(commit(seq, OTHER, OpSpec("create", f"app.bsky.feed.like/l{i}", like(subject))))
        else:
            out.append(commit(seq, STUDY, OpSpec("create", f"app.bsky.feed.post/p{i}", post(f"post {i}"))))
    return out


def expected_rows() -> set[tuple[str, str, str]]:
    rows = set()
    for i in range(COUNT):
        if i % 10 == 9:
            rows.add(("post", POST_URI.format(i - 9), "delete"))
        elif i % 3 == 2:
            rows.add(("like_on_user_post", f"at://{OTHER}/app.bsky.feed.like/l{i}", "create"))
        else:
            rows.add(("post", POST_URI.format(i), "create"))
    return rows


# (point, hit): the pass at which it fires, chosen to fall mid-protocol where a point repeats.
HITS = {
    "write.batch_sent": 2,
    "write.file_written": 150,
    "write.files_durable": 2,
    "write.cursor_stored": 2,
    "export.claim_manifest": 1,
    "export.claim_rename": 1,
    "export.chunk_listed": 2,
    "export.outputs_recorded": 2,
    "export.parquet_temp": 2,
    "export.parquet_placed": 2,
    "export.run_recorded": 1,
    "export.table_committed": 1,  # between the run's two tables (post, like_on_user_post)
    "export.content_erased": 1,
    "export.erase_vacuumed": 1,
    "export.committed": 1,
    "export.removing": 2,
    "export.bookkeeping_removed": 1,
    "export.claim_removed": 1,
    "export.record_written": 1,  # the coverage table replaced and vacuumed, its digest not noted
    "export.record_committed": 2,  # the membership table replaced, what it replaced not vacuumed
    "purge.begun": 1,
    "purge.cache_removed": 1,
    "purge.part_written": 2,
    "purge.part_replaced": 1,
    "purge.table_rewritten": 1,
    "purge.table_deleted": 1,
    "purge.vacuumed": 1,
    "purge.finished": 1,
    "backfill.batch_written": 2,
    "backfill.files_durable": 1,
}
# The points a stop signal is sent at (every command's start and end, a compaction's partition,
# a snapshot's dataset): tests/test_stops.py's matrix.
STOP_POINTS = ("command.", "compact.", "snapshot.")
# Steps of a plain-Parquet output (--format parquet); the others run against Delta tables.
PARQUET_ONLY = {"purge.part_written", "purge.part_replaced"}
CASES = [
    pytest.param(point, process, action, id=f"{process}/{point}:{action}")
    for point, processes in POINTS.items()
    if not point.startswith(("purge.", "backfill.", *STOP_POINTS))
    for process in processes
    for action in ("kill", "raise")
]
PURGE_CASES = [
    pytest.param(point, action, id=f"{point}:{action}")
    for point in POINTS
    if point.startswith("purge.")
    for action in ("kill", "raise")
]
# The export's steps again with a plain-Parquet output: the same protocol, no table to commit.
PARQUET_CASES = [
    pytest.param(point, action, id=f"parquet/{point}:{action}")
    for point in ("export.outputs_recorded", "export.run_recorded", "export.committed")
    for action in ("kill", "raise")
]


def command(module: str, root: Path, *args: str) -> list[str]:
    store = ["--cache-dir", str(root / "cache"), "--state", str(root / "state.sqlite"), "-q"]
    return [sys.executable, "-m", module, *store, *args]


def write_command(root: Path, *extra: str) -> list[str]:
    replay, study = root.parent / "replay.bin", root.parent / "study.txt"
    return command(
        "syncstream.write", root, "--replay", str(replay), "--study-users", str(study),
        "--flush-frames", "100", "--no-sync", *extra,
    )  # fmt: skip


def export_command(root: Path, *extra: str) -> list[str]:
    return command("syncstream.export", root, "--out", str(root / "out"), "--batch-files", "150", *extra)


def parquet_export_command(root: Path, *extra: str) -> list[str]:
    return export_command(root, "--format", "parquet", *extra)


def run(arguments: list[str], failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "SYNCSTREAM_FAILPOINTS"}
    if failpoint is not None:
        environment["SYNCSTREAM_FAILPOINTS"] = failpoint
    return subprocess.run(arguments, capture_output=True, text=True, env=environment, check=False)


@cache
def written_cache(base: str) -> Path:
    """One cache written by a plain writer, copied for each export case."""
    root = Path(base) / "pristine"
    result = run(write_command(root))
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("failpoints")
    write_replay(base / "replay.bin", frames())
    write_users(base / "study.txt", [STUDY])
    return base


def output_rows(root: Path) -> list[tuple[str, str, str, int]]:
    """(record_type, uri, operation, count) over every dataset (not the study's record, which
    ``assert_record_once`` reads): the Delta tables through
    DuckDB's delta_scan, or a plain-Parquet output through read_parquet."""
    out = root / "out"
    with connect() as db:
        tables = [d for d in table_dirs(out) if str(d.relative_to(out)) not in RECORD_TABLES]
        if tables:
            scans = " UNION ALL ".join(
                f"SELECT record_type, uri, operation FROM delta_scan('{d}')" for d in tables
            )
        else:
            scans = (f"SELECT record_type, uri, operation FROM read_parquet('{out}/*/*/*/*.parquet', "
                     "hive_partitioning = true, union_by_name = true)")  # fmt: skip
        return db.execute(f"SELECT *, count(*) FROM ({scans}) GROUP BY ALL").fetchall()


def assert_exactly_once(root: Path) -> None:
    rows = output_rows(root)
    duplicated = [row for row in rows if row[3] != 1]
    assert duplicated == [], "rows exported more than once"
    assert {tuple(row[:3]) for row in rows} == expected_rows()
    assert tree(root / "cache") == set()
    assert sorted(p.name for p in (root / "cache" / ".export").iterdir()) == []
    assert not list((root / "out").rglob(".*.tmp"))
    if table_dirs(root / "out"):
        assert stray_files(root / "out") == [], "data files no table names"
        assert_record_once(root)
        assert deleted_content_held(root / "out") == [], "a deleted post's content outlived its delete"


def assert_record_once(root: Path, frames: int = COUNT) -> None:
    """The study's record holds every frame once, in covered runs that meet end to end (a
    rerun resumes from the stored cursor: no gap), and the study user's one open spell."""
    out = root / "out"
    coverage = table_rows(out, "collection/coverage")
    assert [row for row in coverage if row["kind"] != "covered"] == []
    runs = sorted((row["first_seq"], row["last_seq"], row["frames"]) for row in coverage)
    assert sum(count for _, _, count in runs) == frames
    assert [first for first, _, _ in runs] == [FIRST_SEQ] + [last + 1 for _, last, _ in runs[:-1]]
    assert runs[-1][1] == FIRST_SEQ + frames - 1
    spells = [
        (r["did"], r["role"], r["from_seq"], r["to_seq"]) for r in table_rows(out, "population/membership")
    ]
    assert spells == [(STUDY, "study", FIRST_SEQ, None)]


def deleted_content_held(out: Path) -> list[str]:
    """The data files under the output that still hold a deleted post's text or record."""
    deleted = pa.array(sorted(POST_URI.format(i - 9) for i in range(COUNT) if i % 10 == 9))
    held = []
    for path in sorted(out.rglob("*.parquet")):
        rows = pq.read_table(path)
        if "text" not in rows.column_names:
            continue
        mine = rows.filter(pc.is_in(rows.column("uri"), value_set=deleted))
        if (
            mine.column("text").null_count < mine.num_rows
            or mine.column("record_json").null_count < mine.num_rows
        ):
            held.append(str(path.relative_to(out)))
    return held


@pytest.mark.parametrize(("point", "process", "action"), CASES)
def test_failpoint_then_rerun_exports_every_row_once(
    inputs: Path, point: str, process: str, action: str
) -> None:
    """Crash or fail one process at one step; rerun plainly; every row once, nothing left."""
    spec = f"{process}/{point}:{HITS[point]}:{action}"
    root = inputs / spec.replace("/", "_").replace(":", "_")
    if point.startswith("write."):
        failing = write_command(root, *(["--inline-writes"] if process == "writer-inline" else []))
        recover = [write_command(root), export_command(root)]
    else:
        shutil.copytree(written_cache(str(inputs)), root)
        failing = export_command(root, *(["--inline-parquet"] if process == "export-inline" else []))
        recover = [export_command(root)]
    failed = run(failing, spec)
    assert failed.returncode != 0, f"{spec} did not fire: {failed.stderr}"
    if action == "kill" and not process.endswith("helper"):
        assert failed.returncode == -9
    else:  # a helper's death or a raise is a clean failure of the command
        assert failed.returncode == 1, failed.stderr
        assert failed.stderr.strip().splitlines()[-1].startswith("error: ")
    for arguments in recover:
        result = run(arguments)
        assert result.returncode == 0, result.stderr
    assert_exactly_once(root)


@pytest.mark.parametrize(("point", "action"), PARQUET_CASES)
def test_parquet_failpoint_then_rerun_exports_every_row_once(inputs: Path, point: str, action: str) -> None:
    """The same protocol with --format parquet: killed or failed at a step, then rerun, every
    row once in the plain Hive layout."""
    root = inputs / f"parquet_{point}_{action}"
    shutil.copytree(written_cache(str(inputs)), root)
    failed = run(parquet_export_command(root), f"export/{point}:{HITS[point]}:{action}")
    assert failed.returncode == (-9 if action == "kill" else 1), failed.stderr
    result = run(parquet_export_command(root))
    assert result.returncode == 0, result.stderr
    assert_exactly_once(root)


def late_likes() -> list[bytes]:
    """More likes by OTHER, written after the first export: the purge finds them in the cache."""
    return [
        commit(
            FIRST_SEQ + COUNT + i,
            OTHER,
            OpSpec("create", f"app.bsky.feed.like/late{i}", like(POST_URI.format(0))),
        )
        for i in range(20)
    ]


@cache
def exported_cache(base: str, output_format: str) -> Path:
    """The written cache exported, then 20 more likes by OTHER written: tables and a cache."""
    root = Path(base) / f"exported-{output_format}"
    shutil.copytree(written_cache(base), root)
    assert run(export_command(root, "--format", output_format)).returncode == 0
    write_replay(Path(base) / "late.bin", late_likes())
    late = command("syncstream.write", root, "--replay", str(Path(base) / "late.bin"), "--no-sync",
                   "--study-users", str(Path(base) / "study.txt"))  # fmt: skip
    assert run(late).returncode == 0
    assert len(tree(root / "cache")) == 20
    return root


def purge_command(root: Path) -> list[str]:
    return command("syncstream.purge", root, "--out", str(root / "out"), "--did", OTHER)


@pytest.mark.parametrize(("point", "action"), PURGE_CASES)
def test_purge_failpoint_then_rerun_purges_every_row_once(inputs: Path, point: str, action: str) -> None:
    """Crash or fail a purge at one step; rerun it (or export): OTHER's rows are gone from the
    output and the cache, every other row is there once."""
    root = inputs / f"purge_{point}_{action}"
    output_format = "parquet" if point in PARQUET_ONLY else "delta"
    exported = exported_cache(str(inputs), output_format)
    shutil.copytree(exported, root)
    with StateStore(root / "state.sqlite", create=False) as state:  # its output is the copy's
        state.catalog.relocate(str(exported), str(root))
    failed = run(purge_command(root), f"purge/{point}:{HITS[point]}:{action}")
    assert failed.returncode == (-9 if action == "kill" else 1), failed.stderr
    again = export_command(root, "--format", output_format)
    recover = [purge_command(root), again] if point != "purge.begun" else [again]
    for arguments in recover:
        result = run(arguments)
        assert result.returncode == 0, result.stderr
    rows = output_rows(root)
    assert [row for row in rows if row[3] != 1] == []
    assert {tuple(row[:3]) for row in rows} == {row for row in expected_rows() if row[0] == "post"}
    assert tree(root / "cache") == set()
    assert not list((root / "out").rglob(".*.tmp"))
    if output_format == "delta":
        assert stray_files(root / "out") == [], "a file that held a purged row is left"
        assert_record_once(root, COUNT + 20)  # and the late likes' run
    listed = run(command("syncstream.purge", root, "--list"))
    assert "unfinished" not in listed.stdout and OTHER in listed.stdout


BACKFILL_CASES = [
    pytest.param(point, action, id=f"{point}:{action}")
    for point in POINTS
    if point.startswith("backfill.")
    for action in ("kill", "raise")
]


@pytest.mark.parametrize(("point", "action"), BACKFILL_CASES)
def test_backfill_failpoint_then_rerun_exports_every_record_once(
    tmp_path: Path, point: str, action: str
) -> None:
    """Crash or fail a backfill at one step (mid-repository, or its files durable but the DID not
    recorded done); rerun it, export: every record of the repository is a row once."""
    from benchmarks.repos import build_repo
    from syncstream.servers.keys import REHEARSAL_SEED, SigningKey
    from syncstream.servers.pds import LoopbackPds

    study = write_users(tmp_path / "study.txt", [STUDY])
    StateStore(tmp_path / "state.sqlite").close()  # the writer's part: a backfill creates no store
    with LoopbackPds({STUDY: build_repo(STUDY, 1200)}, key=SigningKey(REHEARSAL_SEED)) as pds:
        backfill = command("syncstream.backfill", tmp_path, "--study-users", str(study), "--plc-url", pds.url,
                           "--scratch-dir", str(tmp_path))  # a killed backfill leaves its scratch here  # fmt: skip
        failed = run(backfill, f"backfill/{point}:{HITS[point]}:{action}")
        assert failed.returncode == (-9 if action == "kill" else 1), failed.stderr
        if action == "raise":
            assert failed.stderr.strip().splitlines()[-1].startswith("error: ")
        for arguments in (backfill, export_command(tmp_path)):
            result = run(arguments)
            assert result.returncode == 0, result.stderr
    rows = output_rows(tmp_path)
    assert [row for row in rows if row[3] != 1] == []
    assert {row[0] for row in rows} == {"post", "like", "like_on_user_post"}
    assert len(rows) == 600 + 600 * 2  # posts; likes, each also a like on the user's post
    assert tree(tmp_path / "cache") == set()


def test_every_point_has_a_hit_in_the_matrix() -> None:
    """The matrix enumerates every failpoint there is (the stop points are test_stops.py's)."""
    assert set(HITS) == {point for point in POINTS if not point.startswith(STOP_POINTS)}


def test_the_protocol_steps_are_the_failpoints() -> None:
    """Every step of the export and purge protocols (syncstream.staging.Step) is a failpoint,
    and every export or purge failpoint is a step."""
    assert {step.value for step in Step} == {p for p in POINTS if p.startswith(("export.", "purge."))}


@pytest.mark.parametrize(
    "text",
    [
        "export.nope:1:kill",
        "export.committed:0:kill",
        "export.committed:1:explode",
        "nope/export.committed:1:kill",
        "x",
    ],
)
def test_a_bad_failpoint_spec_is_a_config_error(text: str) -> None:
    """A spec naming no failpoint, process or action, or no hit, is refused, never ignored."""
    with pytest.raises(ConfigError):
        parse_spec(text)
