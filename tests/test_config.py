"""One configuration file: ``--config FILE`` on every command, a TOML table per command with
the options' names, decoded into the command's options struct with its checks; a flag given on
the command line wins; a misspelt section, key or value is exit 2 naming it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from syncstream.backfill import options as backfill_options
from syncstream.config import SECTIONS
from syncstream.export import options as export_options
from syncstream.init import options as init_options
from syncstream.lake import compact, snapshot
from syncstream.purge import options as purge_options
from syncstream.report import options as report_options
from syncstream.status import options as status_options
from syncstream.write import options as write_options
from tests.helpers import run_syncstream

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
OTHER = "did:plc:53iucmf5ldftgqyf2ac7hmhd"


def _snapshot(argv: Sequence[str]) -> snapshot.SnapshotOptions:
    from syncstream.config import parse_options

    return parse_options(snapshot.SnapshotOptions, snapshot._parser(), argv)


def _compact(argv: Sequence[str]) -> compact.CompactOptions:
    from syncstream.config import parse_options

    return parse_options(compact.CompactOptions, compact._parser(), argv)


PARSE: dict[str, Callable[[Sequence[str]], Any]] = {
    "write": write_options.parse,
    "export": export_options.parse,
    "purge": purge_options.parse,
    "backfill": backfill_options.parse,
    "compact": _compact,
    "snapshot": _snapshot,
    "status": status_options.parse,
    "report": report_options.parse,
    "init": init_options.parse,
}
NEEDED = {"purge": 'did = ["did:plc:ewvi7nxzyoun6zhxrhs64oiz"]\n', "snapshot": 'to = "snap"\n'}


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "syncstream.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_every_command_has_its_section() -> None:
    assert set(PARSE) == set(SECTIONS)


@pytest.mark.parametrize("name", sorted(PARSE))
def test_every_command_reads_its_table(tmp_path: Path, name: str) -> None:
    """Each command's table reaches its options struct; another command's table does not."""
    path = config(tmp_path, f'[{name}]\nquiet = true\nlog_format = "json"\n{NEEDED.get(name, "")}')
    options = PARSE[name](["--config", path])
    assert (options.quiet, options.log_format) == (True, "json")
    other = "export" if name != "export" else "write"
    path = config(tmp_path, f"[{other}]\nquiet = true\n[{name}]\n{NEEDED.get(name, '')}")
    assert PARSE[name](["--config", path]).quiet is False


def test_values_are_read_as_the_command_line_reads_them_and_a_flag_wins(tmp_path: Path) -> None:
    """Durations and rates as text, numbers as TOML numbers, a nested group's option by its own
    name; the command line's flag beats the file's value."""
    path = config(
        tmp_path,
        '[export]\ncache_dir = "/srv/cache"\nevery = "15m"\nbatch_files = 10\nconnect_timeout = 3\n'
        '[backfill]\npds_rate = "100/60"\nfetch_timeout = 2.5\n',
    )
    options = export_options.parse(["--config", path, "--batch-files", "7"])
    assert (options.cache_dir, options.every, options.batch_files) == ("/srv/cache", 900.0, 7)
    assert options.storage.connect_timeout == 3.0
    fetch = backfill_options.parse(["--config", path]).fetch
    assert (fetch.pds_rate, fetch.fetch_timeout) == ((100, 60.0), 2.5)


def test_a_repeated_option_from_the_file_is_replaced_by_the_command_lines(tmp_path: Path) -> None:
    path = config(tmp_path, f'[purge]\ndid = ["{DID}"]\n')
    assert purge_options.parse(["--config", path]).did == (DID,)
    assert purge_options.parse(["--config", path, "--did", OTHER]).did == (OTHER,)


def test_a_required_option_may_come_from_the_file(tmp_path: Path) -> None:
    path = config(tmp_path, '[snapshot]\nto = "/srv/snapshots/2026"\n')
    assert _snapshot(["--config", path]).to == "/srv/snapshots/2026"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[export]\ncahce_dir = "x"\n', "[export] has no option 'cahce_dir' (did you mean 'cache_dir'?)"),
        ('[export]\nrelay = "wss://x"\n', "[export] has no option 'relay'"),
        ('[exprot]\nout = "x"\n', "unknown section [exprot] (did you mean 'export'?)"),
        ('out = "x"\n', "unknown section [out]"),
        ('[export]\nbatch_files = "many"\n', "[export] batch_files: not a positive integer: 'many'"),
        ('[export]\nkeep_cache = "yes"\n', "[export] keep_cache: Expected `bool`, got `str`"),
        ('[export]\nformat = "csv"\n', "[export] format: 'csv' is not one of delta, parquet"),
        ("[export]\nbatch_files = 0\n", "--batch-files must be positive, not 0"),  # the struct's own check
        ("[export\n", "not TOML"),
    ],
)
def test_a_bad_file_is_exit_2_naming_what_is_wrong_and_nothing_is_made(
    tmp_path: Path, text: str, message: str
) -> None:
    path = config(tmp_path, text)
    done = run_syncstream("export", "--config", path, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr.splitlines()[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syncstream.toml"]


def test_a_missing_file_is_exit_2(tmp_path: Path) -> None:
    done = run_syncstream("status", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert done.returncode == 2
    assert "nope.toml: cannot read it" in done.stderr


def test_the_writer_and_the_export_run_from_one_file(tmp_path: Path) -> None:
    """The bundled sample written and exported with every path in the file, none on the
    command line; the tables land where the file says."""
    path = config(
        tmp_path,
        '[write]\ncache_dir = "c"\nstate = "s.sqlite"\nquiet = true\n'
        '[export]\ncache_dir = "c"\nstate = "s.sqlite"\nout = "tables"\n',
    )
    assert run_syncstream("write", "--config", path, cwd=tmp_path).returncode == 0
    done = run_syncstream("export", "--config", path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tables" / "study_user_activity" / "post" / "_delta_log").is_dir()
    assert not (tmp_path / "syncstream-parquet").exists()


def test_the_shipped_file_is_read_by_every_command() -> None:
    """deploy/syncstream.toml holds a table for every command, each read without a complaint;
    the writer's turns the backfill on."""
    shipped = str(Path(__file__).resolve().parents[1] / "deploy" / "syncstream.toml")
    given = {"purge": ["--list"]}  # what a purge removes is the operator's to say, each time
    read = {name: parse(["--config", shipped, *given.get(name, [])]) for name, parse in PARSE.items()}
    assert read["write"].backfill and read["write"].relay == "wss://bsky.network"
    assert read["init"].study_users == read["write"].study_users  # init takes [write]'s
    assert {read[n].state for n in ("write", "export", "purge", "backfill", "status", "report")} == {
        "/var/lib/syncstream/state.sqlite"
    }
