"""``--out s3://...``: the same exporter through pyarrow's S3 filesystem, against a loopback S3
(moto's server on 127.0.0.1), read back from S3 with pyarrow."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs

from syncstream.export.__main__ import main as export_main
from syncstream.purge.__main__ import main as purge_main
from tests.scenario import EXPECTED, FRIEND, keys, write_cache


def test_export_to_an_s3_uri(tmp_path: Path, s3_endpoint: str) -> None:
    """Every dataset lands under s3://bucket/prefix and reads back with its rows."""
    filesystem, _ = pafs.FileSystem.from_uri(f"s3://research?{s3_endpoint}&allow_bucket_creation=true")
    filesystem.create_dir("research")
    write_cache(tmp_path)
    uri = f"s3://research/study-1?{s3_endpoint}"
    args = [
        "--cache-dir",
        str(tmp_path / "cache"),
        "--state",
        str(tmp_path / "state.sqlite"),
        "--out",
        uri,
        "-q",
    ]
    assert export_main(args) == 0
    for name, expected in EXPECTED.items():
        dataset = ds.dataset(
            f"research/study-1/{name}", filesystem=filesystem, format="parquet", partitioning="hive"
        )
        assert keys(dataset.to_table().to_pylist()) == expected


def test_purge_of_an_s3_output(tmp_path: Path, s3_endpoint: str) -> None:
    """A purge rewrites the Parquet under s3://bucket/prefix without the account's rows."""
    filesystem, _ = pafs.FileSystem.from_uri(f"s3://research?{s3_endpoint}&allow_bucket_creation=true")
    filesystem.create_dir("research")
    write_cache(tmp_path)
    uri = f"s3://research/study-1?{s3_endpoint}"
    store = ["--cache-dir", str(tmp_path / "cache"), "--state", str(tmp_path / "state.sqlite"), "-q"]
    assert export_main([*store, "--out", uri]) == 0
    assert purge_main([*store, "--out", uri, "--did", FRIEND]) == 0
    for name, expected in EXPECTED.items():
        dataset = ds.dataset(
            f"research/study-1/{name}", filesystem=filesystem, format="parquet", partitioning="hive"
        )
        rows = dataset.to_table().to_pylist()
        assert keys(rows) == {key for key in expected if FRIEND not in key[0]}, name
