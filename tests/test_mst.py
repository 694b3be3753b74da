"""The MST (syncstream.firehose.mst) against the interop tests: key heights, common prefixes,
the roots of known trees, and the commit proofs of ``firehose/commit-proof-fixtures.json``: the
tree before and after each commit, and the ops inverted on the partial tree that the proof's
blocks alone make (as a relay's frame carries it) giving the root before."""

from __future__ import annotations

import json
from typing import Any

import libipld
import pytest

from syncstream.errors import ProofError
from syncstream.firehose.mst import Tree, common_prefix, key_height
from tests.helpers import FIXTURES

INTEROP = FIXTURES / "atproto-interop-tests"
LEAF = "bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454"


def cid(text: str) -> bytes:
    decoded = libipld.decode_cid(text)
    digest: bytes = decoded["hash"]["digest"]
    return bytes((1, decoded["codec"], decoded["hash"]["code"], decoded["hash"]["size"])) + digest


def text(raw: bytes) -> str:
    return str(libipld.encode_cid(raw))


def fixtures(name: str) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads((INTEROP / name).read_text())
    return loaded


def built(keys: list[str]) -> Tree:
    tree = Tree.empty()
    for key in keys:
        assert tree.insert(key.encode(), cid(LEAF)) is None
    return tree


@pytest.mark.parametrize("case", fixtures("mst/key_heights.json"), ids=lambda c: repr(c["key"]))
def test_key_heights(case: dict[str, Any]) -> None:
    assert key_height(case["key"].encode()) == case["height"]


@pytest.mark.parametrize(
    "case", fixtures("mst/common_prefix.json"), ids=lambda c: f"{c['left']!r}-{c['right']!r}"
)
def test_common_prefix(case: dict[str, Any]) -> None:
    assert common_prefix(case["left"].encode(), case["right"].encode()) == case["len"]


def test_the_roots_of_known_trees() -> None:
    """The interop suite's known maps (indigo's mst_interop_test): empty, one key, one key of
    layer 2, five keys over two layers; and the top trimmed when a delete empties it."""
    assert text(Tree.empty().root()) == "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
    assert text(built(["com.example.record/3jqfcqzm3fo2j"]).root()) == (
        "bafyreibj4lsc3aqnrvphp5xmrnfoorvru4wynt6lwidqbm2623a6tatzdu")  # fmt: skip
    assert text(built(["com.example.record/3jqfcqzm3fx2j"]).root()) == (
        "bafyreih7wfei65pxzhauoibu3ls7jgmkju4bspy4t2ha2qdjnzqvoy33ai")  # fmt: skip
    keys = [f"com.example.record/3jqfcqzm{k}2j" for k in ("3fp", "3fr", "3fs", "3ft", "4fc")]
    assert text(built(keys).root()) == "bafyreicmahysq4n6wfuxo522m6dpiy7z7qzym3dzs756t5n7nfdgccwq7m"
    trim = built([f"com.example.record/3jqfcqzm3f{k}2j" for k in ("n", "o", "p", "s", "t", "u")])
    assert text(trim.root()) == "bafyreifnqrwbk6ffmyaz5qtujqrzf5qmxf7cbxvgzktl4e3gabuxbtatv4"
    assert trim.remove(b"com.example.record/3jqfcqzm3fs2j") == cid(LEAF)
    assert text(trim.root()) == "bafyreie4kjuxbwkhzg2i5dljaswcroeih4dgiqq6pazcmunwt2byd725vi"


@pytest.mark.parametrize("case", fixtures("firehose/commit-proof-fixtures.json"), ids=lambda c: c["comment"])
def test_commit_proofs(case: dict[str, Any]) -> None:
    """Before and after roots as the fixture says; from the proof's blocks alone, each added key
    holds the leaf and each deleted one is gone, and the ops inverted give the root before."""
    tree = built(case["keys"])
    assert text(tree.root()) == case["rootBeforeCommit"]
    for key in case["adds"]:
        assert tree.insert(key.encode(), cid(LEAF)) is None
    for key in case["dels"]:
        assert tree.remove(key.encode()) == cid(LEAF)
    after = tree.root()
    assert text(after) == case["rootAfterCommit"]
    every = tree.blocks()
    proof = {cid(c): every[cid(c)] for c in case["blocksInProof"]}
    partial = Tree(after, proof)
    for key in case["adds"]:
        assert partial.get(key.encode()) == cid(LEAF)
    for key in case["dels"]:
        assert partial.get(key.encode()) is None
        assert partial.insert(key.encode(), cid(LEAF)) is None
    for key in case["adds"]:
        assert partial.remove(key.encode()) == cid(LEAF)
    assert text(partial.root()) == case["rootBeforeCommit"]


def test_a_proof_without_a_node_it_needs_is_refused() -> None:
    """The first fixture's tree without its blocks: reaching the missing node raises
    ProofError, it does not guess; a node whose bytes do not hash to its CID is refused too."""
    case = fixtures("firehose/commit-proof-fixtures.json")[0]
    tree = built(case["keys"] + case["adds"])
    every, root = tree.blocks(), tree.root()
    with pytest.raises(ProofError, match="lacks MST node"):
        Tree(root, {}).get(case["adds"][0].encode())
    block = every[root]
    forged = {**every, root: block[:-1] + bytes((block[-1] ^ 1,))}
    with pytest.raises(ProofError, match="does not hash"):
        Tree(root, forged).get(case["adds"][0].encode())
