"""Routing is deterministic and does not depend on the order of ops within a commit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from properties.strategies import any_uris, collections, embeds, valid_dids, valid_rkeys
from syncstream.firehose.decode import Commit, RepoOp
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.population import Population
from syncstream.registry.types import FOLLOW
from syncstream.write.route import route_commit, routing_table

TABLE = routing_table(HANDLERS)


@st.composite
def commits(draw: st.DrawFn) -> tuple[Commit, Population]:
    people = draw(st.lists(valid_dids, min_size=2, max_size=5, unique=True))
    repo = draw(st.sampled_from(people))
    ops = []
    for rkey in draw(st.lists(valid_rkeys, min_size=1, max_size=6, unique=True)):
        collection = draw(collections)
        action = draw(st.sampled_from(["create", "update", "delete"]))
        target = draw(
            st.one_of(st.sampled_from(people).map(lambda d: f"at://{d}/app.bsky.feed.post/3p"), any_uris)
        )
        record = (
            {"subject": draw(st.sampled_from(people))}
            if collection == FOLLOW
            else {
                "subject": {"uri": target},
                "reply": {"parent": {"uri": target}},
                "embed": draw(embeds(target)),
            }
        )
        ops.append(RepoOp(action, collection, rkey, "bafyreiabc", None if action == "delete" else record))
    study = frozenset(draw(st.lists(st.sampled_from(people), max_size=3)))
    in_network = frozenset(draw(st.lists(st.sampled_from(people), max_size=3)))
    return Commit(1, repo, "3rev", "t", tuple(ops)), Population(study, in_network)


@given(commits(), st.randoms())
def test_routing_is_deterministic_and_order_independent(case: tuple[Commit, Population], rng: object) -> None:
    """Routing the same commit twice, or with its ops shuffled, gives the same writes and rejections."""
    commit, population = case
    writes, rejections = route_commit(TABLE, commit, population, {}, "t")
    again = route_commit(TABLE, commit, population, {}, "t")
    assert (writes, rejections) == again
    shuffled_ops = list(commit.ops)
    rng.shuffle(shuffled_ops)  # type: ignore[attr-defined]
    shuffled = Commit(commit.seq, commit.repo, commit.rev, commit.time, tuple(shuffled_ops))
    writes2, rejections2 = route_commit(TABLE, shuffled, population, {}, "t")
    assert sorted(writes, key=repr) == sorted(writes2, key=repr)
    assert sorted(rejections) == sorted(rejections2)
