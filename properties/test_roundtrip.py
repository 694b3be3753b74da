"""Every registry entry's write is read back identically by its read strategy, and becomes a row
of its dataset that keeps the record's values."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from properties.strategies import cached_records
from syncstream.cache import read_records, write_record
from syncstream.export.tables import build_table
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.records import encode_record
from syncstream.timestamps import micros

ENTRIES = st.sampled_from(list(HANDLERS.values()))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@given(st.data())
def test_write_then_read_is_identity_for_every_handler(data: st.DataObject) -> None:
    """For any record a handler may hold, its read strategy returns exactly what was written."""
    config = data.draw(ENTRIES)
    records = data.draw(
        st.lists(
            cached_records(config.key),
            min_size=1,
            max_size=4,
            unique_by=lambda r: (r.author_did, r.rkey, r.subject_did, r.nested_key),
        )
    )
    with tempfile.TemporaryDirectory() as root:
        written = {write_record(root, config, record): record for record in records}
        assert dict(read_records(root, config)) == written


@given(st.data())
def test_every_cached_record_becomes_its_row(data: st.DataObject) -> None:
    """For any record a handler may hold, its dataset's row keeps its values and its full record."""
    config = data.draw(ENTRIES)
    record = data.draw(cached_records(config.key))
    [row] = build_table(config.dataset, [encode_record(record)]).to_pylist()
    if config.dataset.name == "population/account_event":
        assert (row["did"], row["seq"], row["event"]) == (
            record.author_did,
            record.seq,
            config.collection[1:],
        )
        return
    assert (row["uri"], row["cid"], row["author_did"], row["rkey"], row["seq"], row["rev"]) == (
        record.uri,
        record.cid,
        record.author_did,
        record.rkey,
        record.seq,
        record.rev,
    )
    assert (row["operation"], row["record_type"]) == (config.operation, config.record_type)
    for name in ("event_time", "synctimestamp"):
        assert micros(getattr(record, name)) == (row[name] - EPOCH) // timedelta(microseconds=1)
    expected = None if record.record is None else msgspec.json.decode(msgspec.json.encode(record.record))
    assert (None if row["record_json"] is None else msgspec.json.decode(row["record_json"])) == expected
