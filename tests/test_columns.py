"""Every dataset's columns, by name: each column holds its own value, so that two columns swapped
(in the declaration, the view or the extractor) fail here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from syncstream.export.tables import build_table, schema_of
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.datasets import COMMON_COLUMNS, Dataset
from syncstream.registry.handlers import datasets_of
from syncstream.registry.records import CachedRecord, encode_record
from syncstream.registry.types import HandlerKey as K

CID = "bafyreiftot7eltsc3f6g4qktykmbv6jcmdmhcx5osscan6jpdxkpqcmcza"
QUOTED = "at://did:plc:quoted/app.bsky.feed.post/3quoted"
POST_RECORD: dict[str, Any] = {
    "$type": "app.bsky.feed.post",
    "text": "the text",
    "createdAt": "2026-07-04T14:00:00.000Z",
    "langs": ["en", "pt"],
    "reply": {
        "parent": {"uri": "at://did:plc:parent/app.bsky.feed.post/3parent", "cid": CID},
        "root": {"uri": "at://did:plc:root/app.bsky.feed.post/3root", "cid": CID},
    },
    "embed": {
        "$type": "app.bsky.embed.recordWithMedia",
        "record": {"$type": "app.bsky.embed.record", "record": {"uri": QUOTED, "cid": CID}},
        "media": {"$type": "app.bsky.embed.images", "images": []},
    },
    "facets": [{"index": {"byteStart": 0, "byteEnd": 3}, "features": []}],
    "labels": {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "porn"}, {"val": "gore"}]},
    "tags": ["tag1", "tag2"],
}
SUBJECT_RECORD = {
    "$type": "app.bsky.feed.repost",
    "subject": {"uri": "at://did:plc:subject/app.bsky.feed.post/3subject", "cid": "bafyreisubjectcid"},
    "createdAt": "2026-07-04T13:00:00.000Z",
}
FOLLOW_RECORD = {
    "$type": "app.bsky.graph.follow",
    "subject": "did:plc:followee",
    "createdAt": "2026-07-04T12:00Z",
}


def cached(key: K, record: dict[str, Any] | None) -> CachedRecord:
    config = HANDLERS[key]
    return CachedRecord(
        uri=f"at://did:plc:author/{config.collection}/3rkey",
        cid=CID,
        author_did="did:plc:author",
        rkey="3rkey",
        collection=config.collection,
        operation=config.operation,
        record_type=config.record_type,
        seq=31527015322,
        rev="3mptbypluud2a",
        event_time="2026-07-04T14:38:07.517Z",
        synctimestamp="2026-07-04T14:38:08.123456Z",
        follow_status=config.follow_status,
        nested_key="3nested" if config.nested_path else None,
        subject_did="did:plc:followee" if config.subject_did else None,
        record=record,
    )


def common(record: CachedRecord) -> dict[str, object]:
    return {
        "uri": record.uri,
        "cid": CID,
        "author_did": "did:plc:author",
        "rkey": "3rkey",
        "collection": record.collection,
        "operation": record.operation.value,
        "record_type": record.record_type,
        "seq": 31527015322,
        "rev": "3mptbypluud2a",
        "event_time": datetime(2026, 7, 4, 14, 38, 7, 517000, tzinfo=UTC),
        "rev_time": datetime(2026, 7, 4, 14, 38, 7, 514441, tzinfo=UTC),  # the rev's TID
        "synctimestamp": datetime(2026, 7, 4, 14, 38, 8, 123456, tzinfo=UTC),
        "record_json": None if record.record is None else msgspec.json.encode(record.record).decode(),
        "source": "firehose",
        "verified": None,  # not checked (no --verify)
    }


def row(dataset: Dataset, record: CachedRecord) -> dict[str, object]:
    table = build_table(dataset, [encode_record(record)])
    assert table.schema == schema_of(dataset)
    rows: list[dict[str, object]] = table.to_pylist()
    [found] = rows
    return found


POST_COLUMNS = {
    "text": "the text",
    "created_at": "2026-07-04T14:00:00.000Z",
    "langs": ["en", "pt"],
    "reply_parent_uri": "at://did:plc:parent/app.bsky.feed.post/3parent",
    "reply_root_uri": "at://did:plc:root/app.bsky.feed.post/3root",
    "embed_type": "app.bsky.embed.recordWithMedia",
    "embed_record_uri": QUOTED,
    "facets_json": '[{"index":{"byteStart":0,"byteEnd":3},"features":[]}]',
    "labels": ["porn", "gore"],
    "tags": ["tag1", "tag2"],
}
SUBJECT_COLUMNS = {
    "subject_uri": "at://did:plc:subject/app.bsky.feed.post/3subject",
    "subject_cid": "bafyreisubjectcid",
    "created_at": "2026-07-04T13:00:00.000Z",
    "subject_did": "did:plc:subject",  # the authority of subject_uri
}


@pytest.mark.parametrize("key", [K.POST, K.REPLY_TO_USER_POST, K.QUOTE_OF_USER_POST, K.IN_NETWORK_POST])
def test_post_columns(key: K) -> None:
    """A post's row: the common columns, then each post column with its own value, in order."""
    record = cached(key, POST_RECORD)
    found = row(HANDLERS[key].dataset, record)
    subject = {
        K.REPLY_TO_USER_POST: {"subject_did": "did:plc:parent"},  # the parent's author
        K.QUOTE_OF_USER_POST: {"subject_did": "did:plc:quoted"},  # the quoted post's author
    }.get(key, {})
    expected = common(record) | POST_COLUMNS | subject
    assert list(found) == list(expected)
    assert found == expected


@pytest.mark.parametrize("key", [K.LIKE, K.LIKE_ON_USER_POST, K.REPOST, K.REPOST_ON_USER_POST])
def test_like_and_repost_columns(key: K) -> None:
    """A like's or a repost's row: its subject's URI and CID, and its time."""
    record = cached(key, SUBJECT_RECORD)
    found = row(HANDLERS[key].dataset, record)
    expected = common(record) | SUBJECT_COLUMNS
    assert list(found) == list(expected)
    assert found == expected


@pytest.mark.parametrize(
    ("key", "status"), [(K.FOLLOW_FOLLOWER, "follower"), (K.FOLLOW_FOLLOWEE, "followee")]
)
def test_follow_columns(key: K, status: str) -> None:
    """A follow's row: its status, follower, followee and time."""
    record = cached(key, FOLLOW_RECORD)
    found = row(HANDLERS[key].dataset, record)
    expected = common(record) | {
        "follow_status": status,
        "follower_did": "did:plc:author",
        "followee_did": "did:plc:followee",
        "created_at": "2026-07-04T12:00Z",
    }
    assert list(found) == list(expected)
    assert found == expected


@pytest.mark.parametrize("key", [k for k, c in HANDLERS.items() if c.operation == "delete"])
def test_delete_columns(key: K) -> None:
    """A delete's row keeps the common columns, and nulls where the record would be."""
    record = cached(key, None)
    found = row(HANDLERS[key].dataset, record)
    assert {name: found[name] for name in common(record)} == common(record)
    own = [column.name for column in HANDLERS[key].dataset.columns]
    expected_own = dict.fromkeys(own)
    if "follow_status" in own:
        expected_own |= {"follow_status": record.follow_status, "follower_did": "did:plc:author"}
    assert {name: found[name] for name in own} == expected_own


def test_a_mistyped_field_costs_only_that_column() -> None:
    """A record with one field of the wrong type still gives every other column its value."""
    record = cached(K.QUOTE_OF_USER_POST, POST_RECORD | {"langs": "en", "tags": [1, "tag2"]})
    found = row(HANDLERS[K.QUOTE_OF_USER_POST].dataset, record)
    expected = {"langs": None, "tags": ["tag2"], "subject_did": "did:plc:quoted"}
    assert found == common(record) | POST_COLUMNS | expected


def test_a_backfilled_row_has_no_relay_time_and_keeps_its_rev_time() -> None:
    """event_time is the relay's: null for a backfilled record (the cache holds the client's
    createdAt there); rev_time is the commit's rev as a time either way."""
    record = msgspec.structs.replace(
        cached(K.POST, POST_RECORD), source="backfill", event_time="2026-07-04T14:00:00.000Z"
    )
    found = row(HANDLERS[K.POST].dataset, record)
    assert (found["event_time"], found["rev_time"]) == (None, common(record)["rev_time"])
    assert found["source"] == "backfill"


@pytest.mark.parametrize(
    ("rev", "expected"),
    [
        ("3mptbypluud2a", datetime(2026, 7, 4, 14, 38, 7, 514441, tzinfo=UTC)),
        ("2222222222222", datetime(1970, 1, 1, tzinfo=UTC)),
        ("3ksample", None),  # not a TID: no time
        ("", None),
    ],
)
def test_rev_time_is_the_tid_of_the_rev(rev: str, expected: datetime | None) -> None:
    """rev_time decodes the rev's TID (53 bits of microseconds after the sign bit)."""
    record = msgspec.structs.replace(cached(K.POST, POST_RECORD), rev=rev)
    assert row(HANDLERS[K.POST].dataset, record)["rev_time"] == expected


@pytest.mark.parametrize(
    ("subject", "did"),
    [
        ("at://did:plc:subject/app.bsky.feed.post/3s", "did:plc:subject"),
        ("at://did:web:example.com/app.bsky.feed.post/3s", "did:web:example.com"),
        ("at://alice.example.com/app.bsky.feed.post/3s", None),  # a handle names no account for good
        ("https://example.com/x", None),
    ],
)
def test_subject_did_is_the_authority_of_the_subject_uri(subject: str, did: str | None) -> None:
    """A like's subject_did is its subject URI's authority when that is a DID."""
    record = cached(K.LIKE, SUBJECT_RECORD | {"subject": {"uri": subject, "cid": CID}})
    assert row(HANDLERS[K.LIKE].dataset, record)["subject_did"] == did


@pytest.mark.parametrize(
    ("embed", "uri"),
    [
        ({"$type": "app.bsky.embed.record", "record": {"uri": QUOTED, "cid": CID}}, QUOTED),
        ({"$type": "app.bsky.embed.external", "external": {"uri": "https://x"}}, None),
        ({"$type": "app.bsky.embed.record", "record": {"uri": 7}}, None),
        (None, None),
    ],
)
def test_embed_record_uri(embed: object, uri: str | None) -> None:
    """embed_record_uri is the quoted record's URI, for a plain quote as for one with media."""
    record = cached(K.POST, {**POST_RECORD, "embed": embed})
    assert row(HANDLERS[K.POST].dataset, record)["embed_record_uri"] == uri


def test_every_record_dataset_starts_with_the_common_columns() -> None:
    """The common columns come first in every record dataset, and no dataset repeats a name."""
    names = [column.name for column in COMMON_COLUMNS]
    for dataset in datasets_of(HANDLERS).values():
        schema = schema_of(dataset)
        if dataset.name != "population/account_event":
            assert schema.names[: len(names)] == names
        assert len(set(schema.names)) == len(schema.names), dataset.name


@pytest.mark.parametrize(
    ("key", "record", "rev", "expected"),
    [
        (
            K.ACCOUNT_EVENT,
            {"population": "study", "active": False, "status": "deleted"},
            "",
            {"event": "account", "active": False, "status": "deleted", "handle": None, "rev": None},
        ),
        (
            K.IDENTITY_EVENT,
            {"population": "in_network", "handle": "alice.example.com"},
            "",
            {"event": "identity", "active": None, "status": None, "handle": "alice.example.com", "rev": None},
        ),
        (
            K.SYNC_EVENT,
            {"population": "study"},
            "3mptbypluud2a",
            {"event": "sync", "active": None, "status": None, "handle": None, "rev": "3mptbypluud2a"},
        ),
    ],
)
def test_account_event_columns(key: K, record: dict[str, Any], rev: str, expected: dict[str, object]) -> None:
    """An account event's row: exactly the event columns, each with its own value."""
    event = msgspec.structs.replace(
        cached(key, record), uri="at://did:plc:author/#x/31527015322", rkey="31527015322", rev=rev
    )
    found = row(HANDLERS[key].dataset, event)
    head = common(event)
    assert found == {
        "did": "did:plc:author",
        "population": record["population"],
        "event": expected["event"],
        "seq": 31527015322,
        "event_time": head["event_time"],
        "synctimestamp": head["synctimestamp"],
        "active": expected["active"],
        "status": expected["status"],
        "handle": expected["handle"],
        "rev": expected["rev"],
    }
    assert list(found) == [column.name for column in HANDLERS[key].dataset.columns]
