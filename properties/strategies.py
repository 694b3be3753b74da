"""Every Hypothesis strategy of the project, in one place (written by hand: ``st.builds``
ignores msgspec constraints)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from syncstream.registry.builtin import HANDLERS
from syncstream.registry.records import CachedRecord
from syncstream.registry.types import BLOCK, FOLLOW, LIKE, POST, PROFILE, REPOST, Operation

_B32 = "234567abcdefghijklmnopqrstuvwxyz"

tids = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("234567abcdefghij"),
    st.text(alphabet=_B32, min_size=12, max_size=12),
)
valid_rkeys = st.one_of(
    tids,
    st.from_regex(r"[a-zA-Z0-9._:~-]{1,40}", fullmatch=True).filter(lambda k: k not in (".", "..")),
)
valid_dids = st.one_of(
    st.text(alphabet=_B32, min_size=24, max_size=24).map(lambda s: f"did:plc:{s}"),
    st.from_regex(r"did:web:[a-z0-9]{1,12}(\.[a-z]{2,6}){1,2}", fullmatch=True),
)
hostile_text = st.one_of(
    st.sampled_from(
        [".", "..", "../..", "/", "a/b", "..\\x", "", " ", "did:plc:x/..", "\x00", "~", "%2e%2e"]
    ),
    st.text(max_size=30),
)
any_rkeys = st.one_of(valid_rkeys, hostile_text)
any_dids = st.one_of(valid_dids, hostile_text)
collections = st.sampled_from([POST, LIKE, REPOST, FOLLOW, PROFILE, BLOCK])


def uris(authorities: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda a, c, k: f"at://{a}/{c}/{k}",
        authorities,
        st.sampled_from([POST, LIKE, "app.bsky.feed.generator"]),
        any_rkeys,
    )


any_uris = st.one_of(uris(any_dids), hostile_text)


def embeds(uri: str) -> st.SearchStrategy[dict[str, Any]]:
    """A post's embed of ``uri``: a quote, a quote with media, or an embed that quotes nothing."""
    return st.sampled_from(
        [
            {"$type": "app.bsky.embed.record", "record": {"uri": uri, "cid": "bafyreiabc"}},
            {
                "$type": "app.bsky.embed.recordWithMedia",
                "record": {"$type": "app.bsky.embed.record", "record": {"uri": uri, "cid": "bafyreiabc"}},
                "media": {"$type": "app.bsky.embed.images", "images": []},
            },
            {"$type": "app.bsky.embed.external", "external": {"uri": uri}},
            {"record": {"uri": uri}},
        ]
    )


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_records = st.dictionaries(st.text(max_size=10), json_values, max_size=6)
isotimes = st.datetimes().map(lambda d: f"{d.year:04d}" + d.strftime("-%m-%dT%H:%M:%S.%fZ"))


@st.composite
def cached_records(draw: st.DrawFn, key: str) -> CachedRecord:
    """A record as routing would build it for ``key``, with arbitrary valid components."""
    config = HANDLERS[key]
    author = draw(valid_dids)
    collection = config.collection
    rkey = draw(valid_rkeys)
    deleting = config.operation == Operation.DELETE
    nested: str | None = None
    if config.nested_path is not None:  # an author's DID, or a post's rkey, as routing finds them
        nested = draw(st.just(author) if config.nested_path(author, None) == author else valid_rkeys)
    record: dict[str, Any] | None = None if deleting else draw(json_records)
    return CachedRecord(
        uri=f"at://{author}/{collection}/{rkey}",
        cid=None
        if deleting
        else draw(st.text(alphabet=_B32, min_size=10, max_size=59).map(lambda s: "bafyrei" + s)),
        author_did=author,
        rkey=rkey,
        collection=collection,
        operation=config.operation,
        record_type=config.record_type,
        seq=draw(st.integers(0, 2**63 - 1)),
        rev=draw(tids),
        event_time=draw(isotimes),
        synctimestamp=draw(isotimes),
        follow_status=config.follow_status,
        nested_key=nested,
        subject_did=draw(valid_dids) if config.subject_did is not None else None,
        record=record,
    )


# The MST: repository keys (collection/rkey) and record CIDs --------------------------------------

mst_keys = st.builds(
    lambda collection, rkey: f"{collection}/{rkey}".encode(),
    st.sampled_from([POST, LIKE, FOLLOW, "com.example.record"]),
    st.one_of(tids, st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)),
)
record_cids = st.binary(min_size=32, max_size=32).map(lambda digest: b"\x01\x71\x12\x20" + digest)
