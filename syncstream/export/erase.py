"""The erase of deleted records' content for an export run (``syncstream.lake.erase`` does it),
and the helper process it runs in: it reads and rewrites Parquet, which the export's main
process never does (it never imports pyarrow), so unless the command runs with
``--inline-parquet`` it runs in ``python -m syncstream.export.erase``, started only for a run
with deletes. The helper decides nothing: it erases what the plan names and says how much."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

import msgspec

from syncstream.errors import HelperError
from syncstream.failpoints import set_process
from syncstream.lake.delta import location
from syncstream.lake.erase import ErasePlan, erase_tables, plan_of, record_choice
from syncstream.registry.datasets import Dataset
from syncstream.staging import RunCommit

__all__ = ["erase_run"]

_encode = msgspec.json.Encoder().encode


def erase_run(out: str, run: RunCommit, datasets: Mapping[str, Dataset], *, inline: bool) -> int:
    """After a run's tables are committed: record the choice in each of them and, unless the
    run keeps deleted content, erase the content of what the run deleted, then vacuum; the rows
    erased. Run again for the same run (recovery), it finishes what is left.

    The erase reads and writes Parquet, so it needs pyarrow, which the export's main process
    never imports: unless ``inline`` (the command runs with ``--inline-parquet`` and has it
    already), it runs in a helper process of its own, ``python -m syncstream.export.erase``, started
    only for a run with deletes."""
    keep = run.keep_deleted_content
    for name in sorted(run.tables):
        record_choice(location(out, name), keep=keep)
    plan = plan_of(out, run, datasets)
    if keep or not plan.tables:
        return 0
    if inline:
        return erase_tables(plan)[0]
    done = subprocess.run(
        [sys.executable, "-m", "syncstream.export.erase"],
        input=_encode(plan),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise HelperError(f"erasing deleted records' content failed ({last}); the next export finishes it")
    rows, _ = msgspec.json.decode(done.stdout, type=tuple[int, int])
    return rows


def _main() -> None:
    set_process("erase-helper")
    from syncstream.export.arrow import spare_pyarrow_the_pandas_import  # noqa: PLC0415 (in its process)

    spare_pyarrow_the_pandas_import()
    plan = msgspec.json.decode(sys.stdin.buffer.read(), type=ErasePlan)
    sys.stdout.buffer.write(_encode(erase_tables(plan)))


if __name__ == "__main__":
    _main()
