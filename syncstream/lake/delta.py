"""The datasets as Delta tables: where each one is, its schema, and a run's commit to it.

A dataset ``{service}/{record_type}`` is the Delta table at ``{out}/{service}/{record_type}``,
partitioned by ``partition_date``. Its data files are written beforehand (by the export's
Parquet helper, into the table's directory, where no reader looks until the log names them);
``commit_files`` then adds all of one run's files to the table in one commit that carries the
application transaction ``(app_id, version)``. The table's log is the record of what it holds:
``transaction_version(app_id) >= version`` means the run is in, so a commit is never applied
twice, whoever retries it. Nothing here imports pyarrow: the export's main process commits.

``--out`` is a directory or a ``pyarrow.fs`` URI (``s3://bucket/prefix?endpoint_override=...``);
delta-rs takes the same place as a URI and its storage options.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from deltalake import CommitProperties, DeltaTable, Field, Schema, Transaction, convert_to_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.schema import ArrayType, PrimitiveType
from deltalake.transaction import AddAction, RemoveAction

from syncstream.errors import SchemaMismatchError, SyncstreamError
from syncstream.failpoints import failpoint
from syncstream.registry.datasets import ArrowType, Dataset
from syncstream.staging import AddedFile, RunCommit, Step

__all__ = [
    "PARTITION",
    "STATS_COLUMNS",
    "Location",
    "check_datasets",
    "commit_files",
    "commit_run",
    "convert_plain",
    "delta_schema",
    "is_table",
    "location",
    "open_table",
    "table_configuration",
]

PARTITION = "partition_date"
COMMIT_ATTEMPTS = 20  # another store committing to the same table at once: reload and retry


class Location(NamedTuple):
    uri: str
    storage_options: dict[str, str]


def location(out: str, dataset: str) -> Location:
    """The table of ``dataset`` under ``out`` (a directory or a pyarrow.fs URI)."""
    if "://" not in out:
        return Location(os.path.join(os.path.abspath(out), dataset), {})
    parsed = urllib.parse.urlsplit(out)
    query = dict(urllib.parse.parse_qsl(parsed.query))
    options: dict[str, str] = {}
    if parsed.scheme == "s3":
        endpoint = query.get("endpoint_override")
        scheme = query.get("scheme", "https")
        if endpoint:
            if "://" not in endpoint:
                endpoint = f"{scheme}://{endpoint}"
            options["AWS_ENDPOINT_URL"] = endpoint
            if endpoint.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        if "region" in query:
            options["AWS_REGION"] = query["region"]
        for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            if variable in os.environ:
                options[variable] = os.environ[variable]
        # S3 has conditional puts: concurrent commits need no lock service
        options.setdefault("conditional_put", "etag")
    base = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
    return Location(f"{base}/{dataset}", options)


_TYPES: dict[ArrowType, str] = {
    "string": "string",
    "int64": "long",
    "bool": "boolean",
    "timestamp": "timestamp",
}


def delta_schema(dataset: Dataset) -> Schema:
    """The dataset's columns, then ``partition_date``."""
    fields = []
    for column in (*dataset.head_columns, *dataset.columns):
        kind = (
            ArrayType(PrimitiveType("string"), contains_null=True)
            if column.type == "list<string>"
            else PrimitiveType(_TYPES[column.type])
        )
        fields.append(Field(column.name, kind, nullable=column.nullable))
    fields.append(Field(PARTITION, PrimitiveType("date"), nullable=True))
    return Schema(fields)


# Statistics (each file's min and max per column, in the log and its checkpoints) are kept for
# these columns only: a DID, a URI or a post's text as a min or max would outlive a purge in the
# log's history, which a vacuum does not touch.
STATS_COLUMNS = frozenset({"seq", "event_time", "synctimestamp"})


def table_configuration(columns: Iterable[str]) -> dict[str, str | None]:
    return {"delta.dataSkippingStatsColumns": ",".join(sorted(STATS_COLUMNS.intersection(columns)))}


def is_table(where: Location) -> bool:
    return DeltaTable.is_deltatable(where.uri, storage_options=where.storage_options)


def open_table(where: Location, schema: Schema | None = None) -> DeltaTable:
    """The table; with ``schema``, created (empty) when there is none yet."""
    for _ in range(COMMIT_ATTEMPTS):
        try:
            return DeltaTable(where.uri, storage_options=where.storage_options)
        except TableNotFoundError:
            if schema is None:
                raise
        try:
            return DeltaTable.create(
                where.uri,
                schema,
                mode="ignore",
                partition_by=[PARTITION],
                storage_options=where.storage_options,
                configuration=table_configuration({field.name for field in schema.fields}),
            )
        except CommitFailedError:
            continue  # another store created it meanwhile
    raise SyncstreamError(f"cannot open or create the table {where.uri}")


def _check_schema(table: DeltaTable, schema: Schema, name: str) -> list[Field]:
    """The dataset's columns the table lacks (merged, nullable); a column whose type differs
    raises ``SchemaMismatchError`` naming it."""
    present = {field.name: field for field in table.schema().fields}
    missing = []
    for field in schema.fields:
        found = present.get(field.name)
        if found is None:  # merged as nullable: the table's older rows have no value
            missing.append(Field(field.name, field.type, nullable=True))
        elif _type_text(found.type) != _type_text(field.type):
            raise SchemaMismatchError(
                f"{name}: column {field.name} is {_type_text(found.type)} in the table and "
                f"{_type_text(field.type)} in the dataset; a column's type is never changed"
            )
    return missing


def _type_text(kind: object) -> str:
    if isinstance(kind, PrimitiveType):
        return kind.type
    if isinstance(kind, ArrayType):
        return f"array<{_type_text(kind.element_type)}>"
    return str(kind)


def commit_files(
    where: Location,
    dataset: Dataset,
    files: Sequence[AddedFile],
    *,
    app_id: str,
    version: int,
) -> bool:
    """Add ``files`` (written already) to the dataset's table in one commit under the
    application transaction ``(app_id, version)``. False when the table holds that
    transaction already (committed before a crash, or by a retry): never twice."""
    schema = delta_schema(dataset)
    for _ in range(COMMIT_ATTEMPTS):
        table = open_table(where, schema)
        if (table.transaction_version(app_id) or 0) >= version:
            return False
        missing = _check_schema(table, schema, dataset.name)
        if missing:
            table.alter.add_columns(missing)
            continue
        now = int(time.time() * 1000)
        actions: list[AddAction | RemoveAction] = [
            AddAction(
                f.path, f.size, {PARTITION: f.partition_date}, now, True, json.dumps({"numRecords": f.rows})
            )
            for f in files
        ]
        try:
            table.create_write_transaction(
                actions,
                "append",
                table.schema(),
                partition_by=[PARTITION],
                commit_properties=CommitProperties(app_transactions=[Transaction(app_id, version)]),
            )
        except CommitFailedError:
            continue  # a concurrent commit won: look again (it may have been ours, retried)
        return True
    raise SyncstreamError(f"{dataset.name}: the commit kept conflicting ({COMMIT_ATTEMPTS} attempts)")


def convert_plain(where: Location) -> bool:
    """Make a plain Hive-Parquet dataset left by an earlier release (files of 21, 22 or 23
    columns side by side) the Delta table at the same place, in one commit that adds its files
    as they are, with the union of their columns (a file without a column reads as null there).
    False when there is no Parquet file to convert. The missing columns are merged by the next
    commit (``commit_files``)."""
    if "://" not in where.uri and not os.path.isdir(where.uri):
        return False  # (delta-rs would make the directory while looking)
    partition = Schema([Field(PARTITION, PrimitiveType("date"), nullable=True)])
    try:
        convert_to_deltalake(
            where.uri,
            partition_by=partition,
            partition_strategy="hive",
            storage_options=where.storage_options,
            configuration=table_configuration(STATS_COLUMNS),
            collect_stats=False,
        )
    except DeltaError as error:
        if "No parquet file is found" in str(error):
            return False
        raise
    return True


def check_datasets(out: str, datasets: Iterable[Dataset]) -> None:
    """Refuse (``SchemaMismatchError``) a dataset whose table has a column of another type."""
    for dataset in datasets:
        where = location(out, dataset.name)
        try:
            table = DeltaTable(where.uri, storage_options=where.storage_options)
        except TableNotFoundError:
            continue
        _check_schema(table, delta_schema(dataset), dataset.name)


def commit_run(out: str, run: RunCommit, datasets: Mapping[str, Dataset]) -> int:
    """Commit each of the run's tables that does not hold its transaction yet, one commit per
    table, a failpoint between them; how many commits this made."""
    made = 0
    for name, files in sorted(run.tables.items()):
        made += commit_files(
            location(out, name), datasets[name], files, app_id=run.app_id, version=run.version
        )
        failpoint(Step.TABLE_COMMITTED)
    return made
