"""Every handler's write is read back identically by its read strategy."""

from __future__ import annotations

import tempfile

from hypothesis import given
from hypothesis import strategies as st

from properties.strategies import cached_records
from syncstream.handlers import HANDLERS, read_records, write_record
from syncstream.types import HandlerKey


@given(st.data())
def test_write_then_read_is_identity_for_every_handler(data: st.DataObject) -> None:
    """For any record a handler may hold, its read strategy returns exactly what was written."""
    key = data.draw(st.sampled_from(list(HandlerKey)))
    records = data.draw(
        st.lists(
            cached_records(key),
            min_size=1,
            max_size=4,
            unique_by=lambda r: (r.author_did, r.rkey, r.subject_did, r.nested_key),
        )
    )
    config = HANDLERS[key]
    with tempfile.TemporaryDirectory() as root:
        written = {write_record(root, config, record): record for record in records}
        assert dict(read_records(root, config)) == written
