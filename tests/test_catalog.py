"""The store knows every copy it made, and a purge reaches each one: every output it exported to,
every snapshot (rewritten, its manifest re-issued), every --record file, every backfill scratch
directory, the export's bookkeeping and the cache's directories. After ``purge --did X`` no file
the store made holds a byte of X's DID (the state keeps it only where the withdrawal is
remembered). Every command is a real process on real files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from syncstream.firehose.encode import OpSpec, event_frame
from syncstream.firehose.replay import iter_replay
from syncstream.servers.keys import REHEARSAL_SEED, SigningKey, resign_car
from syncstream.servers.pds import LoopbackPds, PdsFault
from syncstream.servers.relay import LoopbackRelay, ReplayRelay
from syncstream.store import StateStore
from tests.helpers import (
    CORPUS,
    TIME,
    commit,
    follow,
    free_port,
    like,
    post,
    wait_for,
    write_replay,
    write_users,
)

KEY = SigningKey(REHEARSAL_SEED)
A = "did:plc:53iucmf5ldftgqyf2ac7hmhd"  # a study user whose repository the PDS serves
B, FRIEND, STRANGER = "did:plc:bob", "did:plc:friend", "did:plc:stranger"
PA, PB = f"at://{A}/app.bsky.feed.post/3pa", f"at://{B}/app.bsky.feed.post/3pb"
CAR = resign_car((CORPUS / "repo.car").read_bytes(), KEY)


def first_frames() -> list[bytes]:
    """The relay's session: A and B post, a stranger likes, replies to and follows A, B likes
    B's own post, the in-network friend posts and has an account event."""
    ops = [
        (A, OpSpec("create", "app.bsky.feed.post/3pa", post("by a"))),
        (B, OpSpec("create", "app.bsky.feed.post/3pb", post("by b"))),
        (STRANGER, OpSpec("create", "app.bsky.feed.like/3l1", like(PA))),
        (STRANGER, OpSpec("create", "app.bsky.feed.post/3r1", post("reply", parent=PA))),
        (STRANGER, OpSpec("create", "app.bsky.graph.follow/3f1", follow(A))),
        (B, OpSpec("create", "app.bsky.feed.like/3l2", like(PB))),
        (FRIEND, OpSpec("create", "app.bsky.feed.post/3n1", post("in network"))),
        (A, OpSpec("create", "app.bsky.feed.like/3l3", like(PB))),
    ]
    frames = [commit(100 + i, repo, op) for i, (repo, op) in enumerate(ops)]
    return [*frames, event_frame("account", seq=100 + len(ops), did=FRIEND, time=TIME, active=True)]


def second_frames() -> list[bytes]:
    """A later replay: more of A and of B, for a second output."""
    ops = [
        (A, OpSpec("create", "app.bsky.feed.post/3pc", post("a again"))),
        (B, OpSpec("create", "app.bsky.feed.post/3pd", post("b again"))),
        (FRIEND, OpSpec("create", "app.bsky.feed.post/3n2", post("friend again"))),
    ]
    return [commit(200 + i, repo, op) for i, (repo, op) in enumerate(ops)]


class Study:
    """A study's directories: ``inputs`` (what the team gives: user files, replays) and ``made``
    (everything the store makes: cache, state, outputs, snapshots, record file, scratch)."""

    def __init__(self, root: Path) -> None:
        self.inputs, self.made = root / "inputs", root / "made"
        self.inputs.mkdir()
        self.made.mkdir()
        self.study = write_users(self.inputs / "study.txt", [A, B])
        self.net = write_users(self.inputs / "net.txt", [FRIEND])
        self.state = self.made / "state.sqlite"
        self.record = self.made / "rec.bin"
        self.scratch = self.made / "scratch"
        self.scratch.mkdir()

    def store(self) -> list[str]:
        return ["--cache-dir", str(self.made / "cache"), "--state", str(self.state), "-q"]

    def users(self) -> list[str]:
        return ["--study-users", str(self.study), "--in-network-users", str(self.net)]

    def run(self, module: str, *args: str, status: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", module, *args], capture_output=True, text=True, check=False, timeout=300
        )
        assert result.returncode == status, (module, args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result

    def write_live(self, frames: list[bytes]) -> None:
        with LoopbackRelay(ReplayRelay(frames)) as relay:
            self.run(
                "syncstream.write", *self.store(), *self.users(), "--no-sync", "--relay", relay.url,
                "--idle-exit", "1.5", "--verify", "none", "--record", str(self.record),
            )  # fmt: skip

    def write_replay(self, frames: list[bytes]) -> None:
        replay = write_replay(self.inputs / f"r{len(list(self.inputs.glob('r*.bin')))}.bin", frames)
        self.run("syncstream.write", *self.store(), *self.users(), "--no-sync", "--replay", str(replay))

    def export(self, out: str, *extra: str, status: int = 0) -> subprocess.CompletedProcess[str]:
        return self.run("syncstream.export", *self.store(), "--out", out, *extra, status=status)

    def purge(self, *extra: str, status: int = 0) -> subprocess.CompletedProcess[str]:
        return self.run("syncstream.purge", *self.store(), *extra, status=status)

    def killed_backfill(self) -> None:
        """A backfill of A killed (SIGKILL) while its repository trickles into the scratch
        directory: the directory stays."""
        with LoopbackPds({A: CAR}, {A: PdsFault("trickle", 0.01)}, key=KEY) as pds:
            alone = write_users(self.inputs / "a.txt", [A])  # B's would fail at once, beside it
            command = [sys.executable, "-m", "syncstream.backfill", *self.store(), "--study-users",
                       str(alone), "--plc-url", pds.url, "--scratch-dir", str(self.scratch),
                       "--min-rate", "0"]  # fmt: skip
            with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
                wait_for(lambda: any(self.scratch.rglob("repo.car")), "the repository spooling")
                process.send_signal(signal.SIGKILL)
                process.communicate(timeout=60)

    def population(self) -> tuple[frozenset[str], frozenset[str]]:
        with StateStore(self.state, create=False) as state:
            current = state.population.current()
        return current.study, current.in_network


def occurrences(path: Path, dids: list[str]) -> dict[str, int]:
    data = path.read_bytes()
    return {did: data.count(did.encode()) for did in dids if did.encode() in data}


def state_rows_naming(path: Path, did: str) -> dict[str, int]:
    """Per table, the rows of the state whose any column holds ``did``."""
    found = {}
    with sqlite3.connect(path) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            where = " OR ".join(f"instr(CAST({c} AS TEXT), ?) > 0" for c in columns)
            (count,) = db.execute(
                f"SELECT count(*) FROM {table} WHERE {where}", [did] * len(columns)
            ).fetchone()
            if count:
                found[table] = count
    return found


def test_the_catalog_records_every_copy_and_a_purge_leaves_no_byte_of_the_account(tmp_path: Path) -> None:
    study = Study(tmp_path)
    study.write_live(first_frames())
    out1, out2 = str(study.made / "out1"), str(study.made / "out2")
    study.export(out1)
    study.write_replay(second_frames())
    study.export(out2)
    snapshot = study.made / "snapshot"
    study.run(
        "syncstream.lake.snapshot", "--out", out1, "--state", str(study.state), "--to", str(snapshot), "-q"
    )
    study.killed_backfill()
    before = json.loads((snapshot / "manifest.json").read_text())
    issued = _sha256(snapshot / "manifest.json")
    with StateStore(study.state, create=False) as state:
        catalog = state.catalog
        assert [o.location for o in catalog.outputs()] == [out1, out2]
        assert {o.format for o in catalog.outputs()} == {"delta"}
        assert all(o.app_id == state.exports.store_id() for o in catalog.outputs())
        [snap] = catalog.snapshots()
        assert (snap.location, snap.output) == (str(snapshot), out1)
        assert snap.manifest_sha256 == _sha256(snapshot / "manifest.json")
        assert [r.location for r in catalog.records()] == [str(study.record)]
        [scratch] = catalog.scratch()
        assert scratch.did == A and Path(scratch.location).parent == study.scratch
        assert Path(scratch.location, "repo.car").exists()
    made = [p for p in study.made.rglob("*") if p.is_file()]
    assert occurrences(study.record, [A])
    assert any(occurrences(p, [A]) for p in made if "snapshot" in p.parts)
    assert any(occurrences(p, [FRIEND]) for p in made if "out2" in p.parts)

    result = study.purge("--did", A, "--did", FRIEND)
    assert "in 2 outputs; 1 snapshots re-issued" in result.stdout
    assert "1 record files rewritten" in result.stdout and "1 scratch directories" in result.stdout
    left = {
        str(p.relative_to(study.made)): found
        for p in study.made.rglob("*")
        if p.is_file()
        and p.name not in ("state.sqlite", "state.sqlite-wal", "state.sqlite-shm")
        and (found := occurrences(p, [A, FRIEND]))
    }
    assert left == {}
    assert not Path(scratch.location).exists()
    assert not list((study.made / "cache").rglob(f"*{FRIEND}*"))
    # the state names them only where the withdrawal is remembered, and holds no deleted bytes
    for did in (A, FRIEND):
        assert state_rows_naming(study.state, did) == {"purged_dids": 1, "purges": 1}
    wal = Path(f"{study.state}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert sum(occurrences(study.state, [A]).values()) == 2  # one purged_dids row, one purges row
    # the snapshot: re-issued, counted, citable by its new checksum, naming no one
    after = json.loads((snapshot / "manifest.json").read_text())
    [entry] = [p for p in after["purges"] if "purge_id" in p]
    assert entry["rows"] > 0 and entry["applied"] == "withdrawal"
    assert (
        sum(d["rows"] for d in after["datasets"].values())
        == sum(d["rows"] for d in before["datasets"].values()) - entry["rows"]
    )
    for dataset in after["datasets"].values():
        for file in dataset["files"]:
            assert _sha256(snapshot / file["path"]) == file["sha256"]
    with StateStore(study.state, create=False) as state:
        [snap] = state.catalog.snapshots()
        assert snap.manifest_sha256 == _sha256(snapshot / "manifest.json") != issued
        assert snap.reissued_at is not None
        assert state.catalog.scratch() == []
    # B's frames and rows stay, exactly
    assert [f for f in iter_replay(study.record) if B.encode() in f]
    study.run("syncstream.write", *study.store(), *study.users(), "--no-sync", "--replay", str(study.record))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_out_the_store_never_exported_to_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    study = Study(tmp_path)
    study.write_live(first_frames())
    study.export(str(study.made / "out"))
    population = study.population()
    result = study.purge("--did", A, "--out", str(tmp_path / "typo"), status=2)
    assert (
        result.stderr.startswith("error: this store never exported to")
        and len(result.stderr.splitlines()) == 1
    )
    with StateStore(study.state, create=False) as state:
        assert state.purges.records() == []
    assert study.population() == population
    assert A in population[0]
    study.purge("--did", A, "--out", str(study.made / "out"))  # the one it made: purged
    assert not [p for p in (study.made / "out").rglob("*") if p.is_file() and occurrences(p, [A])]


def test_an_unreachable_output_leaves_the_purge_unfinished_until_it_is_back(tmp_path: Path) -> None:
    study = Study(tmp_path)
    study.write_live(first_frames())
    out1, out2 = study.made / "out1", study.made / "out2"
    study.export(str(out1))
    study.write_replay(second_frames())
    study.export(str(out2))
    away = study.made / "away"
    out2.rename(away)
    result = study.purge("--did", A, status=1)
    assert "cannot be reached" in result.stderr or "is not there" in result.stderr
    assert "unfinished" in study.purge("--list").stdout
    assert not [p for p in out1.rglob("*") if p.is_file() and occurrences(p, [A])]  # the reachable one
    away.rename(out2)
    assert [p for p in out2.rglob("*") if p.is_file() and occurrences(p, [A])]
    study.export(str(out1))  # the next export finishes it, in every output
    assert "unfinished" not in study.purge("--list").stdout
    assert not [p for p in out2.rglob("*") if p.is_file() and occurrences(p, [A])]


def test_compact_and_snapshot_refuse_an_output_without_tables(tmp_path: Path) -> None:
    study = Study(tmp_path)
    study.write_live(first_frames())
    study.export(str(study.made / "out"))
    empty = tmp_path / "empty"
    empty.mkdir()
    result = study.run("syncstream.lake.compact", "--out", str(empty), "-q", status=2)
    assert result.stderr.startswith("error: ") and "no Delta table" in result.stderr
    target = tmp_path / "snap"
    args = ["--out", str(empty), "--state", str(study.state), "--to", str(target), "-q"]
    result = study.run("syncstream.lake.snapshot", *args, status=2)
    assert result.stderr.startswith("error: ") and "no Delta table" in result.stderr
    assert not (target / "manifest.json").exists()
    with StateStore(study.state, create=False) as state:
        assert state.catalog.snapshots() == []


def test_every_connection_overwrites_deleted_rows(tmp_path: Path) -> None:
    with StateStore(tmp_path / "s.sqlite") as state:
        assert state._database.db.execute("PRAGMA secure_delete").fetchone() == (1,)


def test_a_killed_backfills_scratch_is_removed_by_the_next_backfill(tmp_path: Path) -> None:
    study = Study(tmp_path)
    StateStore(study.state).close()
    study.killed_backfill()
    [left] = list(study.scratch.iterdir())
    alone = study.inputs / "a.txt"
    with LoopbackPds({A: CAR}, key=KEY) as pds:
        study.run("syncstream.backfill", *study.store(), "--study-users", str(alone), "--plc-url",
                  pds.url, "--scratch-dir", str(study.scratch))  # fmt: skip
    assert not left.exists() and list(study.scratch.iterdir()) == []
    with StateStore(study.state, create=False) as state:
        assert state.catalog.scratch() == []
        assert state.backfills.recorded()[A].status == "done"
    assert os.path.isdir(study.made / "cache")


@pytest.mark.parametrize(
    "point", ["export.outputs_recorded", "export.run_recorded", "export.table_committed", "export.committed"]
)
def test_a_purge_after_a_killed_export_leaves_its_bookkeeping_without_the_account(
    tmp_path: Path, point: str
) -> None:
    """An export killed at ``point`` leaves bookkeeping that names A (its run's keys, its chunk
    listings); the purge removes A from it, so the next export's recovery writes none of A's
    keys back into the state, and no row of A into the tables."""
    study = Study(tmp_path)
    study.write_replay(first_frames())
    out = str(study.made / "out")
    environment = {**os.environ, "SYNCSTREAM_FAILPOINTS": f"{point}:1:kill"}
    command = [sys.executable, "-m", "syncstream.export", *study.store(), "--out", out]
    killed = subprocess.run(command, capture_output=True, check=False, env=environment, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    staged = [p for p in (study.made / "cache" / ".export").rglob("*") if p.is_file()]
    assert any(occurrences(p, [A]) for p in staged)
    study.purge("--did", A, "--did", FRIEND)
    left = [p for p in (study.made / "cache").rglob("*") if p.is_file() and occurrences(p, [A, FRIEND])]
    assert left == []
    study.export(out)
    for did in (A, FRIEND):
        assert state_rows_naming(study.state, did) == {"purged_dids": 1, "purges": 1}
    assert [p for p in study.made.rglob("*") if p.is_file() and "state" not in p.name
            and occurrences(p, [A, FRIEND])] == []  # fmt: skip
    with sqlite3.connect(study.state) as db:  # B's keys: the export did run
        assert db.execute("SELECT count(*) FROM exported_keys WHERE uri LIKE ?", (f"at://{B}/%",)).fetchone()[
            0
        ]


def test_an_output_deleted_on_purpose_is_forgotten_and_the_purge_finishes(tmp_path: Path) -> None:
    """An output removed for good would keep every purge unfinished: --forget-output takes it out
    of the catalog and finishes the purge without it; one never exported to is exit 2."""
    study = Study(tmp_path)
    study.write_live(first_frames())
    out = study.made / "out"
    study.export(str(out))
    shutil.rmtree(out)
    study.purge("--did", A, status=1)
    assert "unfinished" in study.purge("--list").stdout
    study.purge("--forget-output", str(tmp_path / "never"), status=2)
    result = study.purge("--forget-output", str(out))
    assert f"forgot the output {out}" in result.stdout and "finished interrupted purge" in result.stdout
    assert "unfinished" not in study.purge("--list").stdout
    with StateStore(study.state, create=False) as state:
        assert state.catalog.outputs() == []


def test_a_study_moved_as_a_whole_keeps_its_catalog(tmp_path: Path) -> None:
    """``Catalog.relocate``: copies under a directory follow it to its new place."""
    (tmp_path / "old").mkdir()
    with StateStore(tmp_path / "old" / "s.sqlite") as state:
        state.catalog.record_output(str(tmp_path / "old" / "out"), "delta", "app", 1.0)
        state.catalog.record_output("s3://bucket/lake", "delta", "app", 2.0)
        state.catalog.record_snapshot(
            str(tmp_path / "old" / "snap"), str(tmp_path / "old" / "out"), "1", "x", 3.0
        )
        state.catalog.record_record_file(str(tmp_path / "old" / "rec.bin"), 4.0)
        assert state.catalog.relocate(str(tmp_path / "old"), str(tmp_path / "new")) == 3
        new = str(tmp_path / "new")
        assert [o.location for o in state.catalog.outputs()] == [f"{new}/out", "s3://bucket/lake"]
        [snap] = state.catalog.snapshots()
        assert (snap.location, snap.output) == (f"{new}/snap", f"{new}/out")
        assert [r.location for r in state.catalog.records()] == [f"{new}/rec.bin"]


def test_a_store_that_exported_before_its_catalog_is_refused_until_an_export_records_it(
    tmp_path: Path,
) -> None:
    """A version-5 store exported to outputs it never recorded: a purge cannot know where they
    are, so it is exit 2 with nothing recorded, until an export records its output."""
    study = Study(tmp_path)
    study.write_live(first_frames())
    with sqlite3.connect(study.state) as db:  # as version 5 left it: datasets written, no catalog
        db.execute("INSERT INTO written_by (kind, name) VALUES ('dataset', 'study_user_activity/post')")
    result = study.purge("--did", A, status=2)
    assert "exported before it recorded its outputs" in result.stderr
    with StateStore(study.state, create=False) as state:
        assert state.purges.records() == []
    study.export(str(study.made / "out"))
    study.purge("--did", A)


def _moto(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: _accepts(port) or server.poll() is not None, "moto's server listening")
    assert server.poll() is None, "moto's server exited"
    return server


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def test_a_stopped_s3_server_leaves_the_purge_unfinished_until_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorded S3 output's server stopped: the purge is exit 1 and unfinished, and the
    reachable local output is purged meanwhile; once a server answers there again, the next
    export finishes it."""
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    port = free_port()
    endpoint = f"endpoint_override=http://127.0.0.1:{port}&scheme=http&region=us-east-1"
    study = Study(tmp_path)
    study.write_live(first_frames())
    server = _moto(port)
    try:
        pafs.FileSystem.from_uri(f"s3://research?{endpoint}&allow_bucket_creation=true")[0].create_dir(
            "research"
        )
        study.export(f"s3://research/study?{endpoint}")
        study.write_replay(second_frames())
        study.export(str(study.made / "out"))
    finally:
        server.terminate()
        server.wait()
    result = study.purge("--did", A, status=1)
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert "cannot be reached" in error
    assert "unfinished" in study.purge("--list").stdout
    assert not [p for p in (study.made / "out").rglob("*") if p.is_file() and occurrences(p, [A])]
    server = _moto(port)
    try:
        pafs.FileSystem.from_uri(f"s3://research?{endpoint}&allow_bucket_creation=true")[0].create_dir(
            "research"
        )
        study.export(str(study.made / "out"))  # the next export finishes it, there too
    finally:
        server.terminate()
        server.wait()
    assert "unfinished" not in study.purge("--list").stdout
