"""The real corpus end to end: frames -> cache -> Parquet, checked against production Jetstream."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from syncstream.export.__main__ import main as export_main
from syncstream.write.__main__ import main as write_main
from tests.helpers import CORPUS, ROOT, jetstream_events, write_users
from tests.oracle import expected_tree, jetstream_to_events

SAMPLE = ROOT / "syncstream" / "data"
EVENTS = Path("population")
DATASET_OF_DIR = {
    "study_user_activity/{}/post": "study_user_activity/post",
    "study_user_activity/{}/like": "study_user_activity/like",
    "study_user_activity/{}/like_on_user_post": "study_user_activity/like_on_user_post",
    "study_user_activity/{}/reply_to_user_post": "study_user_activity/reply_to_user_post",
    "study_user_activity/{}/repost": "study_user_activity/repost",
    "study_user_activity/{}/repost_on_user_post": "study_user_activity/repost_on_user_post",
    "study_user_activity/{}/quote_of_user_post": "study_user_activity/quote_of_user_post",
    "study_user_activity/{}/follow/follower": "scraped_user_social_network/follow",
    "study_user_activity/{}/follow/followee": "scraped_user_social_network/follow",
    "in_network_user_activity/{}/post": "in_network_user_activity/post",
    "study_user_activity/{}/profile": "study_user_activity/profile",
    "study_user_activity/{}/block": "study_user_activity/block",
}
NAME = re.compile(
    r"(?:author|follower)_did=(did:[^_]+)_(?:followee_did=did:[^_]+_)?(post|like|repost|follow|profile|block)_uri_suffix=(.+)\.json"
)
NSID = {
    "post": "app.bsky.feed.post",
    "like": "app.bsky.feed.like",
    "repost": "app.bsky.feed.repost",
    "follow": "app.bsky.graph.follow",
    "profile": "app.bsky.actor.profile",
    "block": "app.bsky.graph.block",
}


def expected_rows(study: set[str], in_network: set[str]) -> set[tuple[str, str, str, str | None]]:
    rows = set()
    for path in expected_tree(jetstream_to_events(jetstream_events()), study, in_network):
        directory, name = path.rsplit("/", 1)
        operation = "create" if "/create/" in directory else "delete"
        template = next(t for t in DATASET_OF_DIR if f"{directory}/".startswith(f"{t.format(operation)}/"))
        match = NAME.fullmatch(name)
        assert match, name
        did, noun, rkey = match.groups()
        status = directory.rsplit("/", 1)[1] if "/follow/" in directory else None
        rows.add((DATASET_OF_DIR[template], f"at://{did}/{NSID[noun]}/{rkey}", operation, status))
    return rows


def dids(path: Path) -> set[str]:
    return {line.split("#")[0].strip() for line in path.read_text().splitlines()} - {""}


@pytest.mark.parametrize("population", ["sample", "everyone"])
def test_corpus_through_write_and_export_matches_jetstream(tmp_path: Path, population: str) -> None:
    """Every exported row is one the routing table implies, and its cid and record are Jetstream's:
    for the sample population, and with every account of the corpus a study user (reposts, quotes,
    likes and replies among them)."""
    study_file, network_file = SAMPLE / "sample_study_users.txt", SAMPLE / "sample_in_network_users.txt"
    if population == "everyone":
        study_file = write_users(tmp_path / "everyone.txt", sorted({e["did"] for e in jetstream_events()}))
    common = ["--cache-dir", str(tmp_path / "cache"), "--state", str(tmp_path / "s.sqlite"), "-q"]
    write_args = ["--study-users", str(study_file), "--in-network-users", str(network_file)]
    assert write_main([*common, *write_args, "--replay", str(CORPUS / "frames.bin.zst"), "--no-sync"]) == 0
    assert export_main([*common, "--out", str(tmp_path / "out")]) == 0

    jetstream = {
        f"at://{e['did']}/{e['commit']['collection']}/{e['commit']['rkey']}": e["commit"]
        for e in jetstream_events()
        if e["kind"] == "commit"
    }
    records = [
        str(p)
        for p in (tmp_path / "out").glob("*/*/*/*.parquet")
        if not p.relative_to(tmp_path / "out").is_relative_to(EVENTS)
    ]
    with duckdb.connect() as db:
        got = db.execute(
            "SELECT parse_path(filename)[-4] || '/' || parse_path(filename)[-3], uri, operation, "
            "follow_status, cid, record_json FROM read_parquet(?, "
            "hive_partitioning = true, union_by_name = true, filename = true)",
            [records],
        ).fetchall()
        events = [str(p) for p in (tmp_path / "out" / "population" / "account_event").rglob("*.parquet")]
        query = "SELECT did, event, seq, active, status, handle, population FROM read_parquet(?)"
        got_events = db.execute(query, [events]).fetchall() if events else []
    study = dids(study_file)
    assert sorted(got_events) == sorted(
        (e["did"], e["kind"], e[e["kind"]]["seq"], e[e["kind"]].get("active"), e[e["kind"]].get("status"),
         e[e["kind"]].get("handle"), "study" if e["did"] in study else "in_network")
        for e in jetstream_events()
        if e["kind"] != "commit" and (e["did"] in study or e["did"] in dids(network_file))
    )  # fmt: skip
    assert len(got) == len({row[:4] for row in got}), "a row appears twice"
    assert {row[:4] for row in got} == expected_rows(dids(study_file), dids(network_file))
    if population == "sample":
        assert len(got) == 15 and got_events == []
    else:
        by_dataset = Counter(row[0] for row in got)
        assert by_dataset["study_user_activity/repost"] > 0 and by_dataset["study_user_activity/post"] > 0
        assert len(got_events) == 2
    for _, uri, operation, _, cid, record_json in got:
        if operation in ("create", "update"):
            assert cid == jetstream[uri]["cid"]
            assert json.loads(record_json) == jetstream[uri]["record"]
        else:
            assert (cid, record_json) == (None, None)
