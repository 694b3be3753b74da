"""A Table straight from decoded cache files, column by named column, with an explicit schema.

Each cache file is decoded once into its head (``syncstream.registry.views``) and, once, into its
dataset's view of the record; each column then takes its values by its own function, a record
batch of ``BATCH_ROWS`` rows at a time. Columns are plain lists turned into Arrow arrays with
the schema's types: no pandas, no per-row dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from syncstream.registry.datasets import ArrowType, Column, Dataset
from syncstream.registry.views import decode_head
from syncstream.timestamps import micros

__all__ = ["ARROW_TYPES", "BATCH_ROWS", "build_table", "schema_of"]

ARROW_TYPES: Mapping[ArrowType, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "list<string>": pa.list_(pa.string()),
}


def _field(column: Column) -> pa.Field:
    return pa.field(column.name, ARROW_TYPES[column.type], nullable=column.nullable)


def schema_of(dataset: Dataset) -> pa.Schema:
    return pa.schema([_field(column) for column in (*dataset.head_columns, *dataset.columns)])


BATCH_ROWS = 512  # rows decoded into Python objects at a time: a row as Arrow is far smaller


def build_table(dataset: Dataset, files: Sequence[bytes]) -> pa.Table:
    """The Table of these cache files, in this order, with the dataset's schema; built a
    record batch of ``BATCH_ROWS`` at a time, so that only that many rows are ever decoded."""
    schema = schema_of(dataset)
    batches = [
        _record_batch(dataset, schema, files[i : i + BATCH_ROWS]) for i in range(0, len(files), BATCH_ROWS)
    ]
    return pa.Table.from_batches(batches, schema=schema)


def _record_batch(dataset: Dataset, schema: pa.Schema, files: Sequence[bytes]) -> pa.RecordBatch:
    heads = list(map(decode_head, files))
    views = list(map(dataset.view, heads))
    arrays = [_array(column, heads) for column in dataset.head_columns]
    arrays += [_array(column, views) for column in dataset.columns]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _array(column: Column, rows: Sequence[Any]) -> pa.Array:
    values: list[Any] = list(map(column.value, rows))
    if column.type == "timestamp":
        values = [None if value is None else micros(value) for value in values]  # a nullable time
    return pa.array(values, ARROW_TYPES[column.type])
