"""The seed's ingest path, as a user would otherwise run it (the baseline for ``ingest``).

Per frame: the atproto SDK's ``Frame.from_bytes`` -> ``parse_subscribe_repos_message`` ->
``CAR.from_bytes`` -> ``models.get_or_create`` per op; the same routing table; ``json.dumps`` of
the model into one plain file per record. No cursor, no atomic writes.

usage: python benchmarks/seed_ingest.py REPLAY CACHE_DIR STUDY_USERS
"""

from __future__ import annotations

import json
import os
import sys

from atproto import CAR, models, parse_subscribe_repos_message
from atproto_subscription.frames import Frame

from syncstream.firehose.replay import iter_replay

POST, LIKE, FOLLOW = "app.bsky.feed.post", "app.bsky.feed.like", "app.bsky.graph.follow"


def write(path: str, record: object) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as handle:
        handle.write(json.dumps(record))


def authority(uri: str) -> str:
    return uri.removeprefix("at://").split("/")[0]


def main(replay: str, cache: str, users: str) -> None:
    with open(users) as handle:
        study = {line.strip() for line in handle if line.strip() and not line.startswith("#")}
    for data in iter_replay(replay):
        message = parse_subscribe_repos_message(Frame.from_bytes(data))
        if not isinstance(message, models.ComAtprotoSyncSubscribeRepos.Commit):
            continue
        car = CAR.from_bytes(message.blocks)
        repo = message.repo
        for op in message.ops:
            collection, rkey = op.path.split("/", 1)
            base = f"{cache}/study_user_activity"
            if op.action == "delete":
                if repo in study and collection in (POST, LIKE, FOLLOW):
                    noun = {POST: "post", LIKE: "like", FOLLOW: "follow/follower"}[collection]
                    write(
                        f"{base}/delete/{noun}/author_did={repo}_{noun.split('/')[0]}_uri_suffix={rkey}.json",
                        {"uri": rkey},
                    )
                continue
            if op.cid is None or collection not in (POST, LIKE, FOLLOW):
                continue
            record = models.get_or_create(car.blocks.get(op.cid), strict=False)
            payload = record.model_dump(mode="json") if hasattr(record, "model_dump") else dict(record)
            if collection == POST:
                name = f"author_did={repo}_post_uri_suffix={rkey}.json"
                if repo in study:
                    write(f"{base}/create/post/{name}", payload)
                reply = getattr(record, "reply", None)
                if reply is not None and authority(reply.parent.uri) in study:
                    write(
                        f"{base}/create/reply_to_user_post/{reply.parent.uri.rsplit('/', 1)[1]}/{name}",
                        payload,
                    )
            elif collection == LIKE:
                name = f"author_did={repo}_like_uri_suffix={rkey}.json"
                subject = record.subject.uri
                if repo in study:
                    write(f"{base}/create/like/{subject.rsplit('/', 1)[1]}/{name}", payload)
                if authority(subject) in study and f"/{POST}/" in subject:
                    write(f"{base}/create/like_on_user_post/{subject.rsplit('/', 1)[1]}/{name}", payload)
            else:
                name = f"follower_did={repo}_followee_did={record.subject}_follow_uri_suffix={rkey}.json"
                if repo in study:
                    write(f"{base}/create/follow/follower/{name}", payload)
                if record.subject in study:
                    write(f"{base}/create/follow/followee/{name}", payload)


if __name__ == "__main__":
    main(*sys.argv[1:4])
