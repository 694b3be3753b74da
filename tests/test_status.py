"""``syncstream status``: the store and its tables at a glance, as text that fits a terminal or
one JSON object, every number checked against the store and the tables read back; a missing
or foreign state is exit 2 and nothing is made."""

from __future__ import annotations

import datetime
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable

from syncstream.store import StateStore
from syncstream.store.chains import Link
from syncstream.users import read_user_lines
from tests.helpers import run_syncstream, sample_with_a_gap, store_paths

DATA = Path(__file__).resolve().parents[1] / "syncstream" / "data"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample written, then a replay that starts 40 seqs past its cursor (a gap),
    exported; one study user then purged (a withdrawal)."""
    root = tmp_path_factory.mktemp("study")
    sample_with_a_gap(root)
    withdrawn = read_user_lines(DATA / "sample_study_users.txt").unwrap()[0][1]
    purge = run_syncstream(
        "purge", "-q", *store_paths(root), "--out", str(root / "out"), "--did", withdrawn, cwd=root
    )
    assert purge.returncode == 0, purge.stderr
    with StateStore(root / "s.sqlite", create=False) as state:  # two backfills, as a backfill records them
        state.backfills.record("did:plc:ewvi7nxzyoun6zhxrhs64oiz", rev="3mptbypluud2a", records=5)
        state.backfills.record("did:plc:53iucmf5ldftgqyf2ac7hmhd", reason="PDS answered 500")
        state.chains.put(
            {"did:plc:ewvi7nxzyoun6zhxrhs64oiz": Link("3mptbypluud2a", None)}
        )  # as a backfill starts it
        state.catalog.add_scratch(
            str(root / "syncstream-backfill-x"), "did:plc:53iucmf5ldftgqyf2ac7hmhd", 1.0
        )
    return root


def status(root: Path, *extra: str) -> dict[str, Any]:
    done = run_syncstream("status", "--state", str(root / "s.sqlite"), "--json", *extra, cwd=root)
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def read_back(out: Path) -> dict[str, tuple[int, int]]:
    """Each table's rows and files, as deltalake reads them."""
    found = {}
    for log in sorted(out.glob("*/*/_delta_log")):
        table = DeltaTable(str(log.parent))
        rows = table.to_pyarrow_dataset().to_table(use_threads=False).num_rows
        found[str(log.parent.relative_to(out))] = (rows, len(table.file_uris()))
        del table
    return found


def test_the_json_object_says_what_the_store_holds(study: Path) -> None:
    got = status(study)
    with closing(sqlite3.connect(study / "s.sqlite")) as db:
        (cursor,) = db.execute("SELECT value FROM meta WHERE key = 'cursor'").fetchone()
        users = dict(db.execute("SELECT kind, count(*) FROM users GROUP BY kind").fetchall())
        handlers = [
            n for (n,) in db.execute("SELECT name FROM written_by WHERE kind = 'handler' ORDER BY name")
        ]
        (committed,) = db.execute("SELECT max(committed_at) FROM export_claims").fetchone()
    assert got["cursor"] == {"replay": cursor}
    assert (got["study_users"], got["in_network_users"]) == (users["study"], users["in_network"])
    assert got["withdrawn"] == 1
    assert got["purged"] == {"withdrawal": 1}
    assert (got["pending_purges"], got["unfinished_purges"], got["purges"]) == (0, 0, 1)
    assert got["backfills"] == {"done": 1, "failed": 1, "pending": 0}
    assert got["verified_accounts"] == 1
    assert got["handlers"] == handlers
    assert got["last_export"]["run"] == 1
    assert got["last_export"]["time"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(committed)))
    with closing(sqlite3.connect(study / "s.sqlite")) as db:
        runs = db.execute("SELECT kind, first_seq, last_seq, first_time, last_time FROM coverage").fetchall()
        outputs = [o for (o,) in db.execute("SELECT location FROM catalog_outputs")]
        scratch = [o for (o,) in db.execute("SELECT location FROM catalog_scratch")]
    covered = [r for r in runs if r[0] == "covered"]
    (gap,) = [r for r in runs if r[0] == "gap"]
    assert got["coverage"] == {
        "runs": len(covered),
        "gaps": 1,
        "largest_gap": {
            "source": "replay",
            "first_seq": gap[1],
            "last_seq": gap[2],
            "seqs": gap[2] - gap[1] + 1,
            "from_time": gap[3],
            "to_time": gap[4],
        },
        "through": {"replay": max(r[2] for r in covered)},
        "last_time": {"replay": max(covered, key=lambda r: r[2])[4]},
    }
    assert len(covered) == 2 and gap[1] == covered[0][2] + 1 and gap[2] - gap[1] == 39  # the replay's
    assert got["catalog"] == {
        "snapshots": {"count": 0, "locations": []},
        "records": {"count": 0, "locations": []},
        "scratch": {"count": 1, "locations": scratch},
    }
    # no --out: the outputs the catalog records, and the lag behind the last frame covered
    assert got["outputs"] == outputs == [str((study / "out").resolve())]
    assert {name: (t["rows"], t["files"]) for name, t in got["tables"].items()} == read_back(study / "out")
    assert "collection/coverage" in got["tables"] and "population/membership" in got["tables"]
    assert got["lag_from"] == "coverage"
    last = datetime.datetime.fromisoformat(got["coverage"]["last_time"]["replay"]).timestamp()
    assert abs(got["lag_seconds"] - (time.time() - last)) < 60


def test_with_out_each_table_has_the_rows_and_files_its_log_holds(study: Path) -> None:
    """Read from the logs; and status only reads: the store's bytes are as they were."""
    before = (study / "s.sqlite").read_bytes()
    got = status(study, "--out", str(study / "out"))
    assert (study / "s.sqlite").read_bytes() == before
    assert {name: (t["rows"], t["files"]) for name, t in got["tables"].items()} == read_back(study / "out")
    assert got["outputs"] == [str(study / "out")]
    assert got["lag_seconds"] > 0 and got["lag_from"] == "tables"  # the sample's events are past


def test_the_text_fits_a_terminal_and_names_every_table(study: Path) -> None:
    done = run_syncstream(
        "status", "--state", str(study / "s.sqlite"), "--out", str(study / "out"), cwd=study
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name, (rows, files) in read_back(study / "out").items():
        line = next(line for line in lines if line.strip().startswith(name + " "))
        assert f" {rows:,} rows " in line and f" {files:,} files " in line
    words = " ".join(done.stdout.split())  # the lines wrap where they must
    assert "1 withdrawn" in words and "backfills 1 done, 1 failed, 0 pending" in words
    assert "verified 1 accounts with a verified chain" in words
    assert "coverage 2 runs, 1 gaps, the largest replay " in words and "(40 seqs," in words
    assert "snapshots 0 snapshots" in words and "scratch 1 backfill scratch directories left:" in words


def test_a_missing_state_is_exit_2_and_nothing_is_made(tmp_path: Path) -> None:
    done = run_syncstream("status", "--state", str(tmp_path / "nope.sqlite"), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("error: no state store at ")
    assert list(tmp_path.iterdir()) == []


def test_a_foreign_database_is_exit_2_and_left_as_it_was(tmp_path: Path) -> None:
    foreign = tmp_path / "other.sqlite"
    with closing(sqlite3.connect(foreign)) as db:
        db.execute("CREATE TABLE accounts (id INTEGER)")
        db.commit()
    before = foreign.read_bytes()
    done = run_syncstream("status", "--state", str(foreign), "--json", cwd=tmp_path)
    assert done.returncode == 2
    assert "not a syncstream state store" in done.stderr
    assert foreign.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.sqlite"]


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(tmp_path: Path, flag: str) -> None:
    from importlib.metadata import version

    done = run_syncstream(flag, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"syncstream {version('syncstream')}\n")
