"""Options once: each command's options a checked struct with the command line's defaults, the
same usage error for the same bad value on every command, every option explained by --help."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from syncstream.backfill import __main__ as backfill_command
from syncstream.backfill import options as backfill_options
from syncstream.errors import ConfigError
from syncstream.export import __main__ as export_command
from syncstream.export import options as export_options
from syncstream.init import options as init_options
from syncstream.lake import compact, snapshot
from syncstream.lake.storage_options import StorageOptions
from syncstream.options import HANDLERS_ENV, PLC_URL, FetchOptions, parse_duration
from syncstream.purge import __main__ as purge_command
from syncstream.purge import options as purge_options
from syncstream.report import options as report_options
from syncstream.servers import pds, relay
from syncstream.status import options as status_options
from syncstream.write import __main__ as write_command
from syncstream.write import options as write_options

ROOT = Path(__file__).resolve().parent.parent

MAINS: dict[str, Callable[[Sequence[str]], int]] = {
    "write": write_command.main,
    "export": export_command.main,
    "purge": purge_command.main,
    "backfill": backfill_command.main,
    "compact": compact.main,
    "snapshot": snapshot.main,
    "relay": relay.main,
    "pds": pds.main,
}
PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "write": write_options.parser,
    "export": export_options.parser,
    "purge": purge_options.parser,
    "backfill": backfill_options.parser,
    "compact": compact._parser,
    "snapshot": snapshot._parser,
    "relay": relay._parser,
    "init": init_options.parser,
    "status": status_options.parser,
    "report": report_options.parser,
}
NEEDED = {
    "purge": ["--did", "did:plc:ewvi7nxzyoun6zhxrhs64oiz"],
    "snapshot": ["--to", "x"],
    "relay": ["--replay", "x"],
}


@pytest.mark.parametrize(
    ("command", "option", "kind"),
    [
        ("write", "--flush-frames", "a positive integer"),
        ("write", "--flush-seconds", "a positive number"),
        ("write", "--idle-exit", "a positive number"),
        ("write", "--backfill-concurrency", "a positive integer"),
        ("write", "--backfill-timeout", "a positive number"),
        ("write", "--backfill-hold-bytes", "a positive integer"),
        ("write", "--health-max-age", "a positive number"),
        ("export", "--batch-files", "a positive integer"),
        ("export", "--batch-bytes", "a positive integer"),
        ("export", "--writer-timeout", "a positive number"),
        ("export", "--connect-timeout", "a positive number"),
        ("export", "--progress-seconds", "a positive number"),
        ("purge", "--writer-timeout", "a positive number"),
        ("backfill", "--concurrency", "a positive integer"),
        ("backfill", "--pds-concurrency", "a positive integer"),
        ("backfill", "--deadline", "a positive number"),
        ("compact", "--target-mib", "a positive number"),
        ("relay", "--rate", "a positive number"),
    ],
)
@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_each_command_refuses_a_non_positive_value_the_same_way(
    capsys: pytest.CaptureFixture[str], command: str, option: str, kind: str, value: str
) -> None:
    """A zero, a negative or a word where a positive number goes: exit 2, one usage line that
    names the option and the value, worded alike on every command."""
    with pytest.raises(SystemExit) as refused:
        MAINS[command]([*NEEDED.get(command, []), option, value])
    assert refused.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(f"error: argument {option}: not {kind}: {value!r}")


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("export", "--dedup-window-hours"),
        ("compact", "--older-than-days"),
        ("compact", "--retention-hours"),
        ("write", "--cursor"),
        ("backfill", "--min-rate"),
        ("write", "--backfill-min-rate"),
    ],
)
def test_a_negative_value_is_refused_where_zero_is_fine(
    capsys: pytest.CaptureFixture[str], command: str, option: str
) -> None:
    with pytest.raises(SystemExit) as refused:
        MAINS[command]([*NEEDED.get(command, []), option, "-1"])
    assert refused.value.code == 2
    assert re.search(
        rf"argument {option}: not a non-negative (number|integer): '-1'$", capsys.readouterr().err
    )


@pytest.mark.parametrize("option", ["--every", "--compact-every"])
def test_a_bad_duration_is_a_usage_error(capsys: pytest.CaptureFixture[str], option: str) -> None:
    with pytest.raises(SystemExit) as refused:
        export_command.main([option, "0s"])
    assert refused.value.code == 2
    assert f"argument {option}: expected a positive duration" in capsys.readouterr().err
    assert parse_duration("15m") == 900.0


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_help_explains_every_option(command: str) -> None:
    """Every option of every command has its help line in --help."""
    parser = PARSERS[command]()
    text = parser.format_help()
    for action in parser._actions:
        assert action.help, (command, action.option_strings)
        for flag in action.option_strings:
            assert flag in text, (command, flag)


def test_the_parsers_defaults_are_the_structs(monkeypatch: pytest.MonkeyPatch) -> None:
    """No option given: the command line builds the struct's defaults, written once."""
    monkeypatch.delenv(HANDLERS_ENV, raising=False)
    assert export_options.parse([]) == export_options.ExportOptions()
    assert write_options.parse([]) == write_options.WriteOptions()
    assert backfill_options.parse([]) == backfill_options.BackfillOptions()
    assert purge_options.parse(["--list"]) == purge_options.PurgeOptions(list=True)
    assert init_options.parse([]) == init_options.InitOptions()
    assert status_options.parse([]) == status_options.StatusOptions()
    assert report_options.parse([]) == report_options.ReportOptions()
    assert backfill_options.BackfillOptions().plc_url == write_options.WriteOptions().plc_url == PLC_URL


def test_the_library_refuses_what_the_command_line_refuses() -> None:
    """The structs check themselves: the library's set-up takes no value the command would not."""
    for build, message in (
        (lambda: export_options.ExportOptions(batch_files=0), "--batch-files must be positive, not 0"),
        (lambda: export_options.ExportOptions(dedup_window_hours=-1), "must not be negative"),
        (lambda: export_options.ExportOptions(format="csv"), "format must be delta or parquet"),
        (lambda: export_options.ExportOptions(clear_cache=True, dry_run=True), "--clear-cache cannot"),
        (lambda: export_options.ExportOptions(compact_every=60.0), "--compact-every needs --every"),
        (lambda: StorageOptions(request_timeout=0), "--request-timeout must be positive"),
        (lambda: FetchOptions(pds_concurrency=0), "--pds-concurrency must be positive"),
        (lambda: write_options.WriteOptions(relay="ws://x", replay="y"), "two sources"),
        (lambda: write_options.WriteOptions(idle_exit=5.0), "--idle-exit applies to --relay only"),
        (purge_options.PurgeOptions, "give the accounts to purge"),
        (lambda: compact.CompactOptions(target_mib=0), "--target-mib must be positive"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            build()


def test_the_plc_url_is_written_once() -> None:
    sources = (ROOT / "syncstream").rglob("*.py")
    assert sum(path.read_text().count("https://plc.directory") for path in sources) == 1


def test_the_writer_and_the_live_runner_default_to_the_write_commands_options() -> None:
    """A library caller building the writer or the live runner directly gets what the command
    line gets: the defaults are written once, in write/options.py."""
    import inspect

    from syncstream.write.live import LiveOptions
    from syncstream.write.options import WriteOptions
    from syncstream.write.writer import CacheWriter

    command = WriteOptions()
    writer = inspect.signature(CacheWriter).parameters
    for name in ("flush_frames", "flush_seconds", "index_retention_days"):
        assert writer[name].default == getattr(command, name), name
    live = LiveOptions()
    assert (live.reconnect_delay, live.progress_seconds) == (
        command.reconnect_delay,
        command.progress_seconds,
    )
