"""Where Parquet goes: a ``StorageRepository`` protocol and one adapter over ``pyarrow.fs``.

A local directory and any URI a ``pyarrow.fs`` filesystem understands (``s3://bucket/prefix``,
``gs://...``, ``file:///...``) take the same adapter; adding a backend changes no exporter.
On a local filesystem a file is written under a dot-prefixed temporary name and renamed, so
readers (pyarrow ignores dot-files, DuckDB globs ``*.parquet``) never see half a file; object
stores publish an object whole when its upload completes.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from typing import Protocol

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from syncstream.failpoints import failpoint
from syncstream.lake.storage_options import StorageOptions

__all__ = ["ParquetStorage", "StorageOptions", "StorageRepository", "storage_for"]


class StorageRepository(Protocol):
    def write(self, relative_path: str, table: pa.Table) -> int:
        """Write ``table`` as Parquet at ``relative_path`` (replacing any file there); bytes written."""
        ...

    def remove(self, relative_paths: Iterable[str]) -> None:
        """Remove these files if they exist."""
        ...

    def describe(self) -> str: ...


class ParquetStorage:
    def __init__(self, filesystem: pafs.FileSystem, base: str, *, compression: str = "zstd") -> None:
        self.filesystem = filesystem
        self.base = base.rstrip("/")
        self.compression = compression
        self._atomic_rename = isinstance(filesystem, pafs.LocalFileSystem)

    def _path(self, relative_path: str) -> str:
        return f"{self.base}/{relative_path}"

    def write(self, relative_path: str, table: pa.Table) -> int:
        path = self._path(relative_path)
        directory, name = posixpath.split(path)
        self.filesystem.create_dir(directory, recursive=True)
        target = posixpath.join(directory, f".{name}.tmp") if self._atomic_rename else path
        pq.write_table(table, target, filesystem=self.filesystem, compression=self.compression)
        failpoint("export.parquet_temp")
        if self._atomic_rename:
            self.filesystem.move(target, path)
        failpoint("export.parquet_placed")
        size: int = self.filesystem.get_file_info(path).size
        return size

    def remove(self, relative_paths: Iterable[str]) -> None:
        for relative_path in relative_paths:
            path = self._path(relative_path)
            directory, name = posixpath.split(path)
            # also the temporary of a write cut short (local filesystems only write one)
            for candidate in (path, posixpath.join(directory, f".{name}.tmp")):
                if self.filesystem.get_file_info(candidate).type != pafs.FileType.NotFound:
                    self.filesystem.delete_file(candidate)

    def describe(self) -> str:
        return f"{self.filesystem.type_name}:{self.base}"

    def list_parts(self, prefix: str) -> list[str]:
        """The Parquet files under ``prefix`` (a dataset), relative to the base, sorted; the
        temporaries of writes cut short are not listed."""
        selector = pafs.FileSelector(self._path(prefix), recursive=True, allow_not_found=True)
        return sorted(
            info.path[len(self.base) + 1 :]
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.base_name.endswith(".parquet")
            and not info.base_name.startswith(".")
        )

    def list_datasets(self) -> list[str]:
        """Every dataset under the base, whoever wrote it (``{service}/{record_type}``: a
        directory two levels down that holds a Delta log or date partitions), sorted."""
        found = []
        for service in self._directories(self.base):
            for dataset in self._directories(service):
                inside = {posixpath.basename(path) for path in self._directories(dataset)}
                if "_delta_log" in inside or any(name.startswith("partition_date=") for name in inside):
                    found.append(dataset[len(self.base) + 1 :])
        return sorted(found)

    def _directories(self, path: str) -> list[str]:
        selector = pafs.FileSelector(path, allow_not_found=True)
        return [
            info.path
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.Directory and not info.base_name.startswith(".")
        ]

    def schema(self, relative_path: str) -> pa.Schema:
        """One Parquet file's schema (its footer only)."""
        with self.filesystem.open_input_file(self._path(relative_path)) as source:
            return pq.read_schema(source)

    def read(self, relative_path: str, columns: list[str] | None = None) -> pa.Table:
        """One Parquet file as written (its partition stays in its path, not in the table)."""
        with self.filesystem.open_input_file(self._path(relative_path)) as source:
            return pq.read_table(source, columns=columns)

    def exists(self, relative_path: str) -> bool:
        found: bool = self.filesystem.get_file_info(self._path(relative_path)).type == pafs.FileType.File
        return found


def storage_for(out: str, options: StorageOptions | None = None) -> ParquetStorage:
    """The adapter for a local directory or a filesystem URI such as ``s3://bucket/prefix``;
    an S3 URI gets ``options``' timeouts unless it names its own."""
    if "://" in out:
        filesystem, base = pafs.FileSystem.from_uri(out)
        if isinstance(filesystem, pafs.S3FileSystem):
            filesystem = _with_timeouts(filesystem, options or StorageOptions())
        return ParquetStorage(filesystem, base)
    return ParquetStorage(pafs.LocalFileSystem(), posixpath.abspath(out))


def _with_timeouts(filesystem: pafs.S3FileSystem, options: StorageOptions) -> pafs.S3FileSystem:
    # S3 URIs take no timeout parameters: rebuild the filesystem from its own settings.
    rebuild, (settings,) = filesystem.__reduce__()
    for name in ("connect_timeout", "request_timeout"):
        if settings.get(name, -1) < 0:
            settings[name] = getattr(options, name)
    rebuilt: pafs.S3FileSystem = rebuild(settings)
    return rebuilt
