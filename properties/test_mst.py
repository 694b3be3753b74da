"""The MST: a tree built from random keys, changed by random creates, updates and deletes
(applied as a commit is), gives the root of the tree built afresh from the keys it then holds
(the shape depends on the keys only), and read back from its blocks with the ops inverted, as
the verified stream inverts a commit, gives its previous root."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from properties.strategies import mst_keys, record_cids
from syncstream.firehose.mst import Tree


def built(records: dict[bytes, bytes]) -> Tree:
    tree = Tree.empty()
    for key, value in records.items():
        tree.insert(key, value)
    return tree


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_changed_tree_inverts_to_its_previous_root(data: st.DataObject) -> None:
    records = data.draw(st.dictionaries(mst_keys, record_cids, max_size=60))
    before = built(records)
    previous = before.root()
    ops: list[tuple[bytes, bytes | None, bytes | None]] = []  # (key, new value, previous value)
    for _ in range(data.draw(st.integers(1, 12))):
        held = sorted(k for k in records if k not in {op[0] for op in ops})
        kind = data.draw(st.sampled_from(["create", "update", "delete"] if held else ["create"]))
        if kind == "create":
            key = data.draw(mst_keys.filter(lambda k: k not in records and k not in {op[0] for op in ops}))
            ops.append((key, data.draw(record_cids), None))
        else:
            key = data.draw(st.sampled_from(held))
            ops.append((key, data.draw(record_cids) if kind == "update" else None, records[key]))
    after = dict(records)
    for key, value, prior in ops:
        if value is None:
            assert before.remove(key) == prior
            del after[key]
        else:
            assert before.insert(key, value) == prior
            after[key] = value
    root = before.root()
    assert root == built(after).root()
    proof = Tree(root, before.blocks())
    for key, value, _ in ops:
        assert proof.get(key) == value
    for key, value, prior in sorted(ops, key=lambda op: (op[1] is not None, op[0])):
        undone = proof.remove(key) if prior is None else proof.insert(key, prior)
        assert undone == value
    assert proof.root() == previous
