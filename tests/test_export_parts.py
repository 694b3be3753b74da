"""Parquet parts built by the export's helper process: the same datasets as in-process, a main
process that never imports pyarrow, timestamps read exactly, failures put the claim back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from syncstream.export.__main__ import main as export_main
from syncstream.export.parts import HelperParts
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.handlers import datasets_of
from tests.helpers import ROOT, export_options, tree
from tests.scenario import export_args, write_cache


def rows(out: Path) -> dict[str, list[dict[str, object]]]:
    found = {}
    for dataset in datasets_of(HANDLERS).values():
        if (out / dataset.name).is_dir():
            table = ds.dataset(out / dataset.name, format="parquet", partitioning="hive").to_table()
            found[dataset.name] = sorted(table.to_pylist(), key=str)
    return found


def test_helper_and_inline_parquet_give_the_same_rows(tmp_path: Path) -> None:
    """Every dataset holds the same rows whether the helper or the main process wrote it."""
    for mode in ("helper", "inline"):
        (tmp_path / mode).mkdir()
        write_cache(tmp_path / mode)
        extra = ["--inline-parquet"] if mode == "inline" else []
        assert export_main(export_args(tmp_path / mode, *extra)) == 0
        assert tree(tmp_path / mode / "cache") == set()
    helper, inline = rows(tmp_path / "helper" / "out"), rows(tmp_path / "inline" / "out")
    assert len(helper) >= 5
    for name in helper:
        for row in (*helper[name], *inline[name]):
            row.pop("synctimestamp")  # each cache was written at its own time
            row.pop("partition_date")
    assert helper == inline


EXPORT_WITHOUT_PYARROW = """
import sys
from syncstream.export.__main__ import main
code = main(sys.argv[1:])
assert code == 0, code
assert "pyarrow" not in sys.modules, "the export's main process imported pyarrow"
"""


def test_the_main_process_never_imports_pyarrow(tmp_path: Path) -> None:
    """With the helper, the export's own process stays small: pyarrow lives in the helper only."""
    write_cache(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", EXPORT_WITHOUT_PYARROW, *export_args(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(rows(tmp_path / "out")) >= 5


def test_an_unusable_output_fails_cleanly_and_keeps_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the helper cannot write Parquet (the output is a file), the export exits 1, the
    cache is as it was and nothing is left in the output."""
    write_cache(tmp_path)
    before = tree(tmp_path / "cache")
    (tmp_path / "out").write_text("a file where the output directory should be")
    assert export_main(export_args(tmp_path)) == 1
    assert "the cache is intact" in capsys.readouterr().err
    assert tree(tmp_path / "cache") == before
    assert (tmp_path / "out").read_text().startswith("a file")


def test_a_bad_output_uri_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An output URI that pyarrow cannot open is refused before anything is claimed (exit 2)."""
    write_cache(tmp_path)
    before = tree(tmp_path / "cache")
    args = export_args(tmp_path)
    args[args.index("--out") + 1] = "nosuchscheme://bucket/prefix"
    assert export_main(args) == 2
    assert "cannot open the output" in capsys.readouterr().err
    assert tree(tmp_path / "cache") == before


def test_the_helper_answers_in_order_and_stops_when_closed(tmp_path: Path) -> None:
    """A part writer with nothing to write opens, describes its output and exits 0 when closed."""
    with HelperParts(str(tmp_path / "out")) as parts:
        assert parts.describe().endswith(str(tmp_path / "out"))
        parts.sync()
    assert parts.helper.returncode == 0


def test_a_failed_request_is_raised_and_the_helper_goes_on(tmp_path: Path) -> None:
    """A request that raises in the helper is answered Failed: raised here as HelperError,
    with the request and the error; the helper goes on with the next."""
    from syncstream.errors import HelperError
    from syncstream.export.parts import AddDataset

    with HelperParts(str(tmp_path / "out")) as parts:
        parts.helper.send(AddDataset(b"not a pickle"))
        with pytest.raises(HelperError, match=r"the Parquet helper failed \(AddDataset\): Unpickling"):
            parts.sync()
        assert parts.healthy()
        parts.remove(["nothing/here.parquet"])
    assert parts.helper.returncode == 0


@pytest.mark.parametrize("backlog", [0, 100])
def test_shared_removal_removes_the_files_then_the_bookkeeping(tmp_path: Path, backlog: int) -> None:
    """Whichever process removes a slice (backlog 0: this one, 100: the helper), every file
    and then the bookkeeping are gone once the helper has caught up."""
    files = []
    for i in range(1000):
        path = tmp_path / "claim" / f"{i}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"{}")
        files.append(str(path))
    bookkeeping = tmp_path / "chunk.files"
    bookkeeping.write_text("claim\n")
    parts = HelperParts(str(tmp_path / "out"))
    parts.BACKLOG = backlog
    try:
        parts.finish(files, [str(bookkeeping)])
        parts.sync()
    finally:
        parts.close()
    assert list((tmp_path / "claim").iterdir()) == []
    assert not bookkeeping.exists()


def test_a_helper_that_dies_fails_the_export_cleanly(tmp_path: Path) -> None:
    """With its helper gone, an export fails, puts its claim back and exports nothing; the
    next export writes every row once."""
    from syncstream.errors import HelperError
    from syncstream.export.batch import export_batch
    from syncstream.export.context import setup_batch_export_system

    write_cache(tmp_path)
    before = tree(tmp_path / "cache")
    with setup_batch_export_system(
        export_options(tmp_path, state="state.sqlite"), helper_process=True
    ) as context:
        assert isinstance(context.parts, HelperParts)
        context.parts.kill()
        with pytest.raises(HelperError):
            export_batch(context)
    # the records are back; the chunk's bookkeeping waits for the next export's recovery
    assert {p for p in tree(tmp_path / "cache") if not p.startswith(".export/")} == before
    assert rows(tmp_path / "out") == {}
    assert export_main(export_args(tmp_path)) == 0
    exported = rows(tmp_path / "out")
    assert sum(map(len, exported.values())) == len(before)
    assert tree(tmp_path / "cache") == set()
