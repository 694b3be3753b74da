"""What the README tells a researcher about reading the datasets works as it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tests.helpers import ROOT


def test_readme_reads_partition_date_as_a_date_and_groups_by_event_time(tmp_path: Path) -> None:
    """The README's pyarrow.dataset example (a --format parquet output) reads partition_date as
    date32 (not a string), and
    event_time, the date to group by, is the commit's time."""
    for command in (
        ["syncstream.write"],
        ["syncstream.export", "--format", "parquet", "--out", "plain-parquet"],
    ):
        done = subprocess.run([sys.executable, "-m", *command, "-q"], cwd=tmp_path, check=False)
        assert done.returncode == 0
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    [example] = [block for block in blocks if "ds.partitioning(" in block]
    scope: dict[str, object] = {}
    cwd = Path.cwd()
    try:
        os.chdir(tmp_path)
        exec(example, scope)
        table = scope["posts"].to_table()  # type: ignore[attr-defined]
    finally:
        os.chdir(cwd)
    assert table.schema.field("partition_date").type == pa.date32()
    assert table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    days = pc.unique(pc.cast(table["event_time"], pa.date32())).to_pylist()
    assert days and all(day.year >= 2023 for day in days)
