"""An independent reading of the architecture's routing table: events -> the expected cache tree.

Written from ARCHITECTURE.md alone, sharing no code with syncstream, so that the writer's tree
can be checked file for file against what the table implies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

_RKEY = re.compile(r"[A-Za-z0-9._:~-]{1,512}")
_DID = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")
NOUN = {
    "app.bsky.feed.post": "post",
    "app.bsky.feed.like": "like",
    "app.bsky.feed.repost": "repost",
    "app.bsky.graph.follow": "follow",
    "app.bsky.actor.profile": "profile",  # a study user's own, every version
    "app.bsky.graph.block": "block",  # a study user's own, and its delete
}
POST = "app.bsky.feed.post"


class Event(NamedTuple):
    did: str
    collection: str
    rkey: str
    action: str  # create | update | delete
    record: dict[str, Any] | None
    cid: str | None = None  # an update's version names its file


def _rkey_ok(value: object) -> bool:
    return isinstance(value, str) and value not in (".", "..") and _RKEY.fullmatch(value) is not None


def _did_ok(value: object) -> bool:
    return isinstance(value, str) and _DID.fullmatch(value) is not None


def _split(uri: object) -> tuple[str, str, str] | None:
    if not isinstance(uri, str) or not uri.startswith("at://"):
        return None
    parts = uri[5:].split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def _claims_study_post(raw: object, study: set[str]) -> bool:
    return (
        isinstance(raw, str)
        and raw.startswith("at://")
        and raw[5:].split("/")[0] in study
        and len(raw[5:].split("/")) > 1
        and raw[5:].split("/")[1] == POST
    )


def _quoted(record: dict[str, Any]) -> object:
    embed = record.get("embed")
    if not isinstance(embed, dict):
        return None
    if embed.get("$type") == "app.bsky.embed.record":
        return (embed.get("record") or {}).get("uri")
    if embed.get("$type") == "app.bsky.embed.recordWithMedia":
        return ((embed.get("record") or {}).get("record") or {}).get("uri")
    return None


def expected_tree(events: Iterable[Event], study: set[str], in_network: set[str]) -> set[str]:
    files: set[str] = set()
    cached: dict[str, set[str]] = {}  # uri -> create directories it was written under
    for e in events:
        if e.collection not in NOUN:
            continue
        uri = f"at://{e.did}/{e.collection}/{e.rkey}"
        noun = NOUN[e.collection]
        if e.action == "delete":
            targets: set[str] = set()
            if e.did in study:
                targets.add(
                    {"post": "post", "like": "like", "repost": "repost", "follow": "follow/follower"}.get(
                        noun, noun
                    )
                )
            if e.did in in_network and noun == "post":
                targets.add("in_network_post")  # an in-network user's delete routes by its author
            for created in cached.get(uri, ()):
                targets.add(created)
            if not targets or not (_did_ok(e.did) and _rkey_ok(e.rkey)):
                continue
            for target in targets:
                name = f"author_did={e.did}_{noun}_uri_suffix={e.rkey}.json"
                if target == "in_network_post":
                    files.add(f"in_network_user_activity/delete/post/{e.did}/{name}")
                else:
                    files.add(f"study_user_activity/delete/{target}/{name}")
            continue
        record = e.record or {}
        planned: list[tuple[str, str]] = []  # (create directory tag, relative path)
        ok = _did_ok(e.did) and _rkey_ok(e.rkey)
        if noun == "post":
            name = f"author_did={e.did}_post_uri_suffix={e.rkey}.json"
            if e.did in study:
                planned.append(("post", f"study_user_activity/create/post/{name}"))
            parent = _split((record.get("reply") or {}).get("parent", {}).get("uri"))
            raw_parent = (record.get("reply") or {}).get("parent", {}).get("uri")
            if (
                isinstance(raw_parent, str)
                and raw_parent[5:].split("/")[0] in study
                and raw_parent.startswith("at://")
                and len(raw_parent[5:].split("/")) > 1
                and raw_parent[5:].split("/")[1] == "app.bsky.feed.post"
            ):
                if parent is None or not _rkey_ok(parent[2]):
                    ok = False
                else:
                    planned.append(
                        (
                            "reply_to_user_post",
                            f"study_user_activity/create/reply_to_user_post/{parent[2]}/{name}",
                        )
                    )
            raw_quoted = _quoted(record)
            if _claims_study_post(raw_quoted, study):
                quoted = _split(raw_quoted)
                if quoted is None or not _rkey_ok(quoted[2]):
                    ok = False
                else:
                    planned.append(
                        (
                            "quote_of_user_post",
                            f"study_user_activity/create/quote_of_user_post/{quoted[2]}/{name}",
                        )
                    )
            if e.did in in_network:
                planned.append(("in_network_post", f"in_network_user_activity/create/post/{e.did}/{name}"))
        elif noun in ("like", "repost"):
            name = f"author_did={e.did}_{noun}_uri_suffix={e.rkey}.json"
            raw = (record.get("subject") or {}).get("uri")
            subject = _split(raw)
            if e.did in study:
                if subject is None or not _rkey_ok(subject[2]):
                    ok = False
                else:
                    planned.append((noun, f"study_user_activity/create/{noun}/{subject[2]}/{name}"))
            if (
                isinstance(raw, str)
                and raw.startswith("at://")
                and raw[5:].split("/")[0] in study
                and len(raw[5:].split("/")) > 1
                and raw[5:].split("/")[1] == "app.bsky.feed.post"
            ):
                if subject is None or not _rkey_ok(subject[2]):
                    ok = False
                else:
                    planned.append(
                        (
                            f"{noun}_on_user_post",
                            f"study_user_activity/create/{noun}_on_user_post/{subject[2]}/{name}",
                        )
                    )
        elif noun in ("profile", "block"):
            if e.did in study:
                name = f"author_did={e.did}_{noun}_uri_suffix={e.rkey}.json"
                planned.append((noun, f"study_user_activity/create/{noun}/{name}"))
        else:
            subject = record.get("subject")
            name = f"follower_did={e.did}_followee_did={subject}_follow_uri_suffix={e.rkey}.json"
            if e.did in study:
                if not _did_ok(subject):
                    ok = False
                planned.append(("follow/follower", f"study_user_activity/create/follow/follower/{name}"))
            if isinstance(subject, str) and subject in study:
                planned.append(("follow/followee", f"study_user_activity/create/follow/followee/{name}"))
        if planned and ok:
            for tag, path in planned:
                # every version has its own file: an update's is its create's name and its cid
                files.add(path.removesuffix(".json") + f"_cid={e.cid}.json" if e.action == "update" else path)
                cached.setdefault(uri, set()).add(tag)
    return files


def jetstream_to_events(lines: Iterable[dict[str, Any]]) -> list[Event]:
    return [
        Event(
            e["did"],
            e["commit"]["collection"],
            e["commit"]["rkey"],
            e["commit"]["operation"],
            e["commit"].get("record"),
            e["commit"].get("cid"),
        )
        for e in lines
        if e["kind"] == "commit"
    ]
