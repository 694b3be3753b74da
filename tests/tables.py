"""Reading the export's output back as a researcher would: Delta tables through deltalake,
DuckDB's delta_scan (offline: the extension comes from the duckdb-ext-delta package) and
polars; and what lies on disk beside the tables' logs."""

from __future__ import annotations

import os
import sysconfig
import urllib.parse
from pathlib import Path
from typing import Any

import duckdb
from deltalake import DeltaTable

from syncstream.lake.lock import LOCK_FILE
from syncstream.lake.study_record import RECORD_TABLES

EXTENSIONS = os.path.join(sysconfig.get_paths()["purelib"], "duckdb_ext", "extensions")


def connect() -> duckdb.DuckDBPyConnection:
    """DuckDB with the delta extension loaded from the installed package, never downloaded."""
    db = duckdb.connect(config={"extension_directory": EXTENSIONS, "autoinstall_known_extensions": False})
    db.execute("LOAD delta")
    return db


def table_dirs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.rglob("_delta_log"))


def dataset_names(out: Path) -> list[str]:
    """The tables of the cache's rows under ``out``: not the study's record (coverage,
    membership), which the export derives from the state."""
    names = (str(d.relative_to(out)) for d in table_dirs(out))
    return [name for name in names if name not in RECORD_TABLES]


def table_rows(out: Path, name: str) -> list[dict[str, Any]]:
    """A table's rows at its latest version, read single-threaded (no scan thread outlives it)."""
    table = DeltaTable(str(out / name))
    rows: list[dict[str, Any]] = table.to_pyarrow_dataset().to_table(use_threads=False).to_pylist()
    del table
    return rows


def all_rows(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {name: table_rows(out, name) for name in dataset_names(out)}


def stray_files(out: Path) -> list[str]:
    """Parquet files under a table that its latest version does not name (uncommitted, or
    replaced and not vacuumed), and any file under the output outside every table (but the
    output's lock, ``syncstream.lake.lock``)."""
    stray = []
    tables = table_dirs(out)
    named: set[str] = set()
    for directory in tables:
        table = DeltaTable(str(directory))
        named.update(os.path.normpath(uri.removeprefix("file://")) for uri in table.file_uris())
        del table
    for path in out.rglob("*"):
        if path == out / LOCK_FILE:
            continue
        if path.is_file() and "_delta_log" not in path.parts and str(path) not in named:
            stray.append(str(path.relative_to(out)))
    return sorted(stray)


def unnamed_files(out: Path) -> list[str]:
    """Parquet files under a table that no version of its log names (neither added nor
    removed by any commit): what a killed run left, read from the log's JSON itself."""
    import json  # (only this reader needs it)

    found = []
    for directory in table_dirs(out):
        named: set[str] = set()
        for entry in sorted((directory / "_delta_log").glob("*.json")):
            for line in entry.read_text().splitlines():
                action = json.loads(line)
                for kind in ("add", "remove"):
                    if kind in action:
                        named.add(urllib.parse.unquote(action[kind]["path"]))
        for path in directory.rglob("*.parquet"):
            relative = str(path.relative_to(directory))
            if "_delta_log" not in path.parts and relative not in named:
                found.append(str(path.relative_to(out)))
    return sorted(found)


def files_holding(out: Path, did: str) -> list[str]:
    """Every Parquet file under the output, history included, with ``did`` as a value of any
    of its text columns (an author, a subject, a membership's account)."""
    import pyarrow as pa  # (only this reader needs it)
    import pyarrow.parquet as pq

    def holds(path: Path) -> bool:
        rows = pq.read_table(path)
        return any(
            did in rows.column(field.name).to_pylist()
            for field in rows.schema
            if pa.types.is_string(field.type)
        )

    return sorted(
        str(path.relative_to(out))
        for path in out.rglob("*.parquet")
        if "_delta_log" not in path.parts and holds(path)
    )
