"""No input text, however hostile, yields a cache path outside the handler's directory."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from properties.strategies import any_dids, any_rkeys, any_uris, collections, valid_dids
from syncstream.firehose.decode import Commit, RepoOp
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.handlers import record_path
from syncstream.registry.population import Population
from syncstream.write.route import Rejection, route_op, routing_table

ROOT = "/cache/root"
TABLE = routing_table(HANDLERS)


@given(
    repo=any_dids,
    rkey=any_rkeys,
    collection=collections,
    action=st.sampled_from(["create", "update", "delete"]),
    uri=any_uris,
    subject=st.one_of(any_dids, any_uris),
    study=st.lists(valid_dids, max_size=3),
    study_too=st.booleans(),
    with_media=st.booleans(),
)
def test_routed_paths_stay_inside_their_directory(
    repo: str,
    rkey: str,
    collection: str,
    action: str,
    uri: str,
    subject: str,
    study: list[str],
    study_too: bool,
    with_media: bool,
) -> None:
    """Each routed write's path normalises to a file directly inside its handler directory tree."""
    # The hostile values must reach the path logic: make their authorities study users.
    authorities = {uri[5:].split("/", maxsplit=1)[0]} if uri.startswith("at://") else set()
    population = Population(
        study=frozenset([*study, *authorities, *([repo] if study_too else []), subject]),
        in_network=frozenset([repo]),
    )
    quoted = {"$type": "app.bsky.embed.record", "record": {"uri": uri}}
    embed = {"$type": "app.bsky.embed.recordWithMedia", "record": quoted} if with_media else quoted
    record: dict[str, object] = {"subject": {"uri": uri}, "reply": {"parent": {"uri": uri}}, "embed": embed}
    if collection == "app.bsky.graph.follow":
        record = {"subject": subject}
    op = RepoOp(action, collection, rkey, "bafyreiabc", None if action == "delete" else record)
    routed = route_op(
        TABLE, Commit(1, repo, "3rev", "t", (op,)), op, population, frozenset(HANDLERS), synctimestamp="t"
    )
    if isinstance(routed, Rejection):
        return
    for write in routed:
        path = record_path(ROOT, HANDLERS[write.key], write.record)
        directory = os.path.join(ROOT, HANDLERS[write.key].directory)
        assert os.path.normpath(path) == path
        assert os.path.commonpath([directory, path]) == directory
        depth = 2 if HANDLERS[write.key].nested_path else 1
        assert len(os.path.relpath(path, directory).split(os.sep)) == depth
