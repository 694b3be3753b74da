"""The ``syncstream`` console script and ``python -m syncstream``: every command as a subcommand,
run as a user runs them, in processes of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncstream.__main__ import COMMANDS

SCRIPT = str(Path(sys.executable).parent / "syncstream")  # installed beside this interpreter
ENTRY_POINTS = {"script": [SCRIPT], "python -m": [sys.executable, "-m", "syncstream"]}


def call(
    arguments: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(arguments, capture_output=True, text=True, check=False, cwd=cwd, env=env)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_help_lists_every_command_with_its_line_and_loads_no_pyarrow(entry: str) -> None:
    """``syncstream --help`` exits 0 listing each command with its one line, without importing a
    command's module, pyarrow, delta-rs or the SDK."""
    done = call([*ENTRY_POINTS[entry], "--help"], env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert done.returncode == 0, done.stderr
    listed = [line.split(None, 1) for line in done.stdout.splitlines() if line.startswith("  ")]
    assert listed == [[name, summary] for name, (_, summary) in COMMANDS.items()]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    modules = {module for module, _ in COMMANDS.values()}
    assert imported & {"pyarrow", "deltalake", "atproto_client", "sqlite3", *modules} == set()


@pytest.mark.parametrize("name", COMMANDS)
def test_a_commands_help_is_its_own(name: str) -> None:
    """``syncstream CMD --help`` prints what ``python -m syncstream.CMD --help`` prints, exit 0."""
    module, _ = COMMANDS[name]
    own = call([sys.executable, "-m", module.removesuffix(".__main__"), "--help"])
    assert own.returncode == 0 and own.stdout.startswith("usage: "), own.stderr
    mine = call([SCRIPT, name, "--help"])
    assert (mine.returncode, mine.stdout) == (0, own.stdout)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_an_unknown_or_missing_command_exits_2_and_says_so(entry: str) -> None:
    """An unknown command is one ``error:`` line naming it and the commands, exit 2; no command at
    all prints the usage on stderr, exit 2."""
    unknown = call([*ENTRY_POINTS[entry], "frobnicate", "--out", "x"])
    assert (unknown.returncode, unknown.stdout) == (2, "")
    assert unknown.stderr == (
        "error: unknown command 'frobnicate': choose from "
        "init, write, export, purge, backfill, compact, snapshot, status, report, relay, pds (syncstream --help)\n"
    )
    missing = call(ENTRY_POINTS[entry])
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr.startswith("usage: syncstream COMMAND")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_subcommands_do_the_work_and_exit_with_the_commands_status(entry: str, tmp_path: Path) -> None:
    """``syncstream write`` and ``syncstream export`` on the bundled sample exit 0 and write the
    tables; a command's own refusals keep their status (2: bad options, a missing store)."""
    command = ENTRY_POINTS[entry]
    assert call([*command, "write", "-q"], cwd=tmp_path).returncode == 0
    export = call([*command, "export"], cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    assert "study_user_activity/post" in export.stdout
    assert list((tmp_path / "syncstream-parquet").rglob("_delta_log"))
    missing = call([*command, "purge", "--state", "missing.sqlite", "--did", "did:plc:a"], cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no state store at"), missing.stderr
    assert call([*command, "compact", "--no-such-option"], cwd=tmp_path).returncode == 2
