"""What the export reads of a cache file: its head, and each dataset's view of the record.

The head (the fields every dataset shares) is decoded once per file with msgspec; the record
stays raw JSON. A view decodes only the fields its dataset adds: typed first (one msgspec pass,
no per-field checks), and, when a record does not fit the types, loosely, each field checked on
its own, so that an odd record still becomes a row. No pyarrow here: the registry names these
functions, and the writer and the export's main process never import pyarrow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from syncstream.registry import references as refs
from syncstream.registry.records import BACKFILL
from syncstream.registry.syntax import is_tid

__all__ = [
    "NULL",
    "BlockView",
    "EventView",
    "FileHead",
    "FollowView",
    "PostView",
    "ProfileView",
    "SubjectView",
    "block_view",
    "decode_head",
    "event_view",
    "follow_view",
    "post_view",
    "profile_view",
    "record_json",
    "relay_time",
    "rev_time",
    "subject_view",
]

NULL = msgspec.Raw(b"null")


class FileHead(msgspec.Struct, frozen=True):
    """The fields of a cache file (a ``CachedRecord``) that every dataset uses."""

    uri: str
    cid: str | None
    author_did: str
    rkey: str
    collection: str
    operation: str
    record_type: str
    seq: int | None
    rev: str
    event_time: str
    synctimestamp: str
    follow_status: str | None = None
    subject_did: str | None = None
    record: msgspec.Raw = NULL  # msgspec takes Raw alone, not in a union: null stays b"null"
    source: str = "firehose"
    verified: bool | None = None


decode_head = msgspec.json.Decoder(FileHead).decode


def _raw_text(raw: msgspec.Raw) -> str | None:
    data = bytes(raw)
    return None if data == b"null" else data.decode()


def record_json(head: FileHead) -> str | None:
    return _raw_text(head.record)


_TID_ALPHABET = {c: i for i, c in enumerate("234567abcdefghijklmnopqrstuvwxyz")}


def _tid_time(tid: str | None) -> str | None:
    """The time a TID (a commit's rev) holds, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``: its top 53 bits
    after the sign bit are microseconds since the epoch, the last 10 a clock id. None when it
    is not a TID."""
    if not tid or not is_tid(tid):
        return None
    value = 0
    for character in tid:
        value = value * 32 + _TID_ALPHABET[character]
    seconds, fraction = divmod(value >> 10, 1_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC).strftime('%Y-%m-%dT%H:%M:%S')}.{fraction:06d}Z"


def relay_time(head: FileHead) -> str | None:
    """The commit's time as the relay stamped it; None for a backfilled record, which came
    from a repository and never through a relay (its ``event_time`` in the cache is only the
    client's ``createdAt``, or the fetch's time)."""
    return None if head.source == BACKFILL else head.event_time


def rev_time(head: FileHead) -> str | None:
    """The time in the commit's rev (a TID: microseconds since the epoch, stamped by the
    author's PDS when it made the commit); None when the rev is not a TID."""
    return _tid_time(head.rev)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _did_of(uri: str | None) -> str | None:
    """The authority of an AT-URI when it is a DID (a URI may name its repo by handle)."""
    found = refs.authority(uri)
    return found if found is not None and found.startswith("did:") else None


def _strs(value: object) -> list[str] | None:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else None


# Posts ----------------------------------------------------------------------------------------


class PostView(msgspec.Struct, gc=False):
    text: str | None = None
    created_at: str | None = None
    langs: list[str] | None = None
    reply_parent_uri: str | None = None
    reply_root_uri: str | None = None
    embed_type: str | None = None
    embed_record_uri: str | None = None  # the quoted record's
    facets_json: str | None = None
    labels: list[str] | None = None
    tags: list[str] | None = None

    @property
    def reply_parent_did(self) -> str | None:
        return _did_of(self.reply_parent_uri)

    @property
    def embed_record_did(self) -> str | None:
        return _did_of(self.embed_record_uri)


class _Ref(msgspec.Struct):
    uri: str | None = None
    cid: str | None = None


class _Reply(msgspec.Struct):
    parent: _Ref | None = None
    root: _Ref | None = None


class _EmbedRecord(msgspec.Struct):
    uri: str | None = None  # app.bsky.embed.record: a strong reference
    record: _Ref | None = None  # app.bsky.embed.recordWithMedia: an app.bsky.embed.record


class _Embed(msgspec.Struct):
    type: str | None = msgspec.field(default=None, name="$type")
    record: _EmbedRecord | None = None


class _Label(msgspec.Struct):
    val: str | None = None


class _Labels(msgspec.Struct):
    values: list[_Label] | None = None


class _Post(msgspec.Struct):
    text: str | None = None
    createdAt: str | None = None
    langs: list[str] | None = None
    reply: _Reply | None = None
    embed: _Embed | None = None
    facets: msgspec.Raw = NULL
    labels: _Labels | None = None
    tags: list[str] | None = None


class _LoosePost(msgspec.Struct):
    text: Any = None
    createdAt: Any = None
    langs: Any = None
    reply: Any = None
    embed: Any = None
    facets: msgspec.Raw = NULL
    labels: Any = None
    tags: Any = None


_decode_post = msgspec.json.Decoder(_Post).decode
_decode_loose_post = msgspec.json.Decoder(_LoosePost).decode
_NO_POST = PostView()


def _embedded_uri(embed: _Embed | None) -> str | None:
    if embed is None or embed.record is None:
        return None
    if embed.type == refs.EMBED_RECORD:
        return embed.record.uri
    if embed.type == refs.EMBED_RECORD_WITH_MEDIA and embed.record.record is not None:
        return embed.record.record.uri
    return None


def post_view(head: FileHead) -> PostView:
    try:
        post = _decode_post(head.record)
    except msgspec.DecodeError:  # null, not an object, or a field of another type
        return _loose_post_view(head.record)
    reply, embed, labels = post.reply, post.embed, post.labels
    return PostView(
        text=post.text,
        created_at=post.createdAt,
        langs=post.langs,
        reply_parent_uri=None if reply is None or reply.parent is None else reply.parent.uri,
        reply_root_uri=None if reply is None or reply.root is None else reply.root.uri,
        embed_type=None if embed is None else embed.type,
        embed_record_uri=_embedded_uri(embed),
        facets_json=_raw_text(post.facets),
        labels=None if labels is None or labels.values is None else [v.val for v in labels.values if v.val],
        tags=post.tags,
    )


def _loose_post_view(record: msgspec.Raw) -> PostView:
    try:
        post = _decode_loose_post(record)
    except msgspec.DecodeError:
        return _NO_POST
    labels = refs.at(post.labels, "values")
    values = [_str(refs.at(item, "val")) for item in labels] if isinstance(labels, list) else None
    return PostView(
        text=_str(post.text),
        created_at=_str(post.createdAt),
        langs=_strs(post.langs),
        reply_parent_uri=_str(refs.at(post.reply, "parent", "uri")),
        reply_root_uri=_str(refs.at(post.reply, "root", "uri")),
        embed_type=_str(refs.at(post.embed, "$type")),
        embed_record_uri=_str(refs.embedded_uri(post.embed)),
        facets_json=_raw_text(post.facets),
        labels=None if values is None else [v for v in values if v],
        tags=_strs(post.tags),
    )


# Account events: an account's, identity's or repo's event, of a population DID ---------------


class EventView(msgspec.Struct, gc=False):
    did: str
    population: str | None
    event: str
    seq: int | None
    event_time: str
    synctimestamp: str
    active: bool | None
    status: str | None
    handle: str | None
    rev: str | None


class _Event(msgspec.Struct):
    population: str | None = None
    active: bool | None = None
    status: str | None = None
    handle: str | None = None


_decode_event = msgspec.json.Decoder(_Event).decode


def event_view(head: FileHead) -> EventView:
    try:
        event = _decode_event(head.record)
    except msgspec.DecodeError:
        event = _Event()
    return EventView(
        did=head.author_did,
        population=event.population,
        event=head.collection.removeprefix("#"),
        seq=head.seq,
        event_time=head.event_time,
        synctimestamp=head.synctimestamp,
        active=event.active,
        status=event.status,
        handle=event.handle,
        rev=head.rev or None,
    )


# Likes, reposts and follows: a subject and a time -----------------------------------------------


class SubjectView(msgspec.Struct, gc=False):
    subject_uri: str | None = None
    subject_cid: str | None = None
    created_at: str | None = None

    @property
    def subject_did(self) -> str | None:
        return _did_of(self.subject_uri)


class FollowView(msgspec.Struct, gc=False):
    follow_status: str | None
    follower_did: str
    followee_did: str | None
    created_at: str | None


class _Subject(msgspec.Struct):
    subject: _Ref | str | None = None
    createdAt: str | None = None


class _LooseSubject(msgspec.Struct):
    subject: Any = None
    createdAt: Any = None


_decode_subject = msgspec.json.Decoder(_Subject).decode
_decode_loose_subject = msgspec.json.Decoder(_LooseSubject).decode


def _subject(record: msgspec.Raw) -> tuple[object, str | None]:
    """(subject, createdAt) of a like, a repost or a follow, each None where absent or mistyped."""
    try:
        found = _decode_subject(record)
        return found.subject, found.createdAt
    except msgspec.DecodeError:
        pass
    try:
        loose = _decode_loose_subject(record)
    except msgspec.DecodeError:
        return None, None
    subject = loose.subject
    if isinstance(subject, dict):
        subject = _Ref(uri=_str(subject.get("uri")), cid=_str(subject.get("cid")))
    return subject, _str(loose.createdAt)


def subject_view(head: FileHead) -> SubjectView:
    """A like's or a repost's subject (a strong reference)."""
    subject, created = _subject(head.record)
    if isinstance(subject, _Ref):
        return SubjectView(subject_uri=subject.uri, subject_cid=subject.cid, created_at=created)
    return SubjectView(created_at=created)


def follow_view(head: FileHead) -> FollowView:
    _, created = _subject(head.record)
    return FollowView(
        follow_status=head.follow_status,
        follower_did=head.author_did,
        followee_did=head.subject_did,
        created_at=created,
    )


# Profiles and blocks: a study user's own -------------------------------------------------------


class ProfileView(msgspec.Struct, gc=False):
    display_name: str | None = None
    description: str | None = None
    avatar_cid: str | None = None  # the avatar blob's CID
    pinned_post_uri: str | None = None


class _Profile(msgspec.Struct):
    displayName: Any = None
    description: Any = None
    avatar: Any = None
    pinnedPost: Any = None


_decode_profile = msgspec.json.Decoder(_Profile).decode


def profile_view(head: FileHead) -> ProfileView:
    """An ``app.bsky.actor.profile`` version; each field None where absent or mistyped."""
    try:
        profile = _decode_profile(head.record)
    except msgspec.DecodeError:  # null (a delete), or not an object
        return ProfileView()
    return ProfileView(
        display_name=_str(profile.displayName),
        description=_str(profile.description),
        avatar_cid=_str(refs.at(profile.avatar, "ref", "$link")),
        pinned_post_uri=_str(refs.at(profile.pinnedPost, "uri")),
    )


class BlockView(msgspec.Struct, gc=False):
    blocked_did: str | None = None
    created_at: str | None = None


def block_view(head: FileHead) -> BlockView:
    """An ``app.bsky.graph.block``: whom it blocks (a DID) and when its author says it was made."""
    subject, created = _subject(head.record)
    return BlockView(blocked_did=subject if isinstance(subject, str) else None, created_at=created)
