"""``syncstream init``: a store made with its population before any writer run, from the
writer's own config file, so that a backfill can come first; refused without a population,
and then nothing is left behind."""

from __future__ import annotations

import json
from pathlib import Path

from deltalake import DeltaTable

from syncstream.servers.keys import REHEARSAL_SEED, SigningKey, resign_car
from syncstream.servers.pds import LoopbackPds
from syncstream.store import StateStore
from tests.helpers import CORPUS, run_syncstream, write_users

KEY = SigningKey(REHEARSAL_SEED)
CAR = resign_car((CORPUS / "repo.car").read_bytes(), KEY)
DID = "did:plc:53iucmf5ldftgqyf2ac7hmhd"  # the corpus repository's account


def test_a_backfill_comes_before_the_first_writer_run(tmp_path: Path) -> None:
    """init from the [write] table, then a backfill and an export from the same file: the
    repository's records are in the tables, and no writer ever ran."""
    write_users(tmp_path / "study.txt", [DID])
    (tmp_path / "syncstream.toml").write_text(
        '[write]\ncache_dir = "cache"\nstate = "s.sqlite"\nstudy_users = "study.txt"\nrelay = "wss://x"\n'
        '[backfill]\ncache_dir = "cache"\nstate = "s.sqlite"\nfetch_timeout = 5\n'
        '[export]\ncache_dir = "cache"\nstate = "s.sqlite"\nout = "out"\n'
        '[status]\nstate = "s.sqlite"\nout = "out"\n',
        encoding="utf-8",
    )
    done = run_syncstream("init", "--config", "syncstream.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        f"created the state store {tmp_path / 's.sqlite'}: 1 study users, 0 in-network"
    )
    with StateStore(tmp_path / "s.sqlite", create=False) as state:
        assert state.population.current().study == {DID}
        assert state.cursors.sources() == {}
    with LoopbackPds({DID: CAR}, key=KEY) as pds:
        backfill = run_syncstream(
            "backfill", "--config", "syncstream.toml", "--plc-url", pds.url, "-q", cwd=tmp_path
        )
    assert backfill.returncode == 0, backfill.stderr
    assert run_syncstream("export", "--config", "syncstream.toml", "-q", cwd=tmp_path).returncode == 0
    status = json.loads(
        run_syncstream("status", "--config", "syncstream.toml", "--json", cwd=tmp_path).stdout
    )
    assert (status["backfills"]["done"], status["cursor"]) == (1, {})
    posts = DeltaTable(str(tmp_path / "out" / "study_user_activity" / "post"))
    rows = posts.to_pyarrow_dataset().to_table(use_threads=False).to_pylist()
    del posts
    assert rows and {row["source"] for row in rows} == {"backfill"}
    assert status["tables"]["study_user_activity/post"]["rows"] == len(rows)


def test_init_again_loads_the_user_files_as_the_writer_does(tmp_path: Path) -> None:
    first = write_users(tmp_path / "a.txt", [DID])
    assert (
        run_syncstream(
            "init", "--state", "s.sqlite", "--cache-dir", "c", "--study-users", str(first), cwd=tmp_path
        ).returncode
        == 0
    )
    other = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
    second = write_users(tmp_path / "b.txt", [DID, other])
    done = run_syncstream(
        "init", "--state", "s.sqlite", "--cache-dir", "c", "--study-users", str(second), cwd=tmp_path
    )
    assert done.stdout.startswith(f"opened the state store {tmp_path / 's.sqlite'}: 2 study users")
    with StateStore(tmp_path / "s.sqlite", create=False) as state:
        assert state.population.current().study == {DID, other}


def test_no_population_is_exit_2_and_no_store_is_left(tmp_path: Path) -> None:
    done = run_syncstream("init", "--state", "s.sqlite", "--cache-dir", "c", cwd=tmp_path)
    assert done.returncode == 2
    assert "give the population: --study-users FILE" in done.stderr
    assert list(tmp_path.iterdir()) == []
    empty = write_users(tmp_path / "empty.txt", [])
    done = run_syncstream(
        "init", "--state", "s.sqlite", "--cache-dir", "c", "--study-users", str(empty), cwd=tmp_path
    )
    assert done.returncode == 2
    assert "the study and in-network sets are both empty" in done.stderr
    assert not any(p.name.startswith("s.sqlite") for p in tmp_path.iterdir())


def test_an_empty_population_is_allowed_when_asked(tmp_path: Path) -> None:
    done = run_syncstream(
        "init", "--state", "s.sqlite", "--cache-dir", "c", "--allow-empty-population", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s.sqlite").is_file()
