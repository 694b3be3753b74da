"""``--out s3://...``: the same exporter through pyarrow's S3 filesystem, against a loopback S3
(moto's server on 127.0.0.1), read back from S3 with pyarrow."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest

from syncstream.export.__main__ import main as export_main
from syncstream.purge.__main__ import main as purge_main
from tests.test_export import EXPECTED, FRIEND, keys, write_cache


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on loopback, in a process of its own: delta-rs holds the GIL through
    some of its requests, which would starve a server thread in this process."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)  # start-up: polled, not a timed assertion
        yield f"endpoint_override=http://127.0.0.1:{port}&scheme=http&region=us-east-1"
    finally:
        server.terminate()
        server.wait()


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
