"""The README and docs/ hold together: every relative link leads to a file that exists, and to a
heading of it when it names one; the README's and the dataset guide's examples run against a
real export and give the right counts; the guide documents every column."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from syncstream.firehose.encode import OpSpec
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.datasets import COMMON_COLUMNS
from syncstream.registry.handlers import datasets_of
from tests.helpers import ROOT, commit, follow, like, post, write_replay, write_users

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def anchors(document: Path) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces to
    hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", document.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def relative_links(document: Path) -> list[str]:
    text = FENCE.sub("", document.read_text())
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_the_docs_map_names_every_document() -> None:
    """The README links each document under docs/, and there is one at least."""
    linked = {(ROOT / target.split("#")[0]).resolve() for target in relative_links(ROOT / "README.md")}
    assert len(DOCUMENTS) > 1
    assert set(DOCUMENTS[1:]) <= linked


def test_every_relative_link_resolves() -> None:
    """Each relative link in README.md and docs/*.md names an existing file, and an existing
    heading of it when it has a fragment."""
    broken = []
    for document in DOCUMENTS:
        for target in relative_links(document):
            path, _, fragment = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.exists() or (fragment and fragment not in anchors(linked)):
                broken.append((document.relative_to(ROOT).as_posix(), target))
    assert broken == []


# The examples ----------------------------------------------------------------------------------

DOCS_A, DOCS_B = "did:plc:docsadocsadocsadocsadocs", "did:plc:docsbdocsbdocsbdocsbdocs"
DOCS_STRANGER, DOCS_FRIEND = "did:plc:strangerstrangerstrange", "did:plc:friendfriendfriendfriend"
P1 = f"at://{DOCS_A}/app.bsky.feed.post/3p1"


def docs_frames() -> list[bytes]:
    """A post edited once, one deleted, likes of it by a study user and by a stranger (whose like
    is withdrawn), a reply by a study user, a follow between study users, an in-network post."""
    return [
        commit(10, DOCS_A, OpSpec("create", "app.bsky.feed.post/3p1", post("first"))),
        commit(
            11, DOCS_A, OpSpec("update", "app.bsky.feed.post/3p1", post("first, edited")), rev="3mptbypluud2b"
        ),
        commit(12, DOCS_A, OpSpec("create", "app.bsky.feed.post/3p2", post("oops")), rev="3mptbypluud2c"),
        commit(13, DOCS_B, OpSpec("create", "app.bsky.feed.like/3lb", like(P1))),
        commit(14, DOCS_STRANGER, OpSpec("create", "app.bsky.feed.like/3ls", like(P1))),
        commit(15, DOCS_A, OpSpec("delete", "app.bsky.feed.post/3p2"), rev="3mptbypluud2d"),
        commit(16, DOCS_STRANGER, OpSpec("delete", "app.bsky.feed.like/3ls"), rev="3mptbypluud2b"),
        commit(17, DOCS_B, OpSpec("create", "app.bsky.feed.post/3rb", post("a reply", parent=P1))),
        commit(
            18, DOCS_A, OpSpec("create", "app.bsky.graph.follow/3f1", follow(DOCS_B)), rev="3mptbypluud2e"
        ),
        commit(19, DOCS_FRIEND, OpSpec("create", "app.bsky.feed.post/3n1", post("in network"))),
    ]


def _command(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "syncstream", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ./syncstream-parquet (Delta tables) and ./plain-parquet (plain
    Parquet) of the docs' scenario, as the README's commands make them."""
    where = tmp_path_factory.mktemp("docs")
    write_replay(where / "replay.bin", docs_frames())
    write_users(where / "study.txt", [DOCS_A, DOCS_B])
    write_users(where / "net.txt", [DOCS_FRIEND])
    for cache, out, extra in (
        ("cache", "syncstream-parquet", []),
        ("plain", "plain-parquet", ["--format", "parquet"]),
    ):
        store = ["--cache-dir", cache, "--state", f"{cache}.sqlite", "-q"]
        users = ["--study-users", "study.txt", "--in-network-users", "net.txt", "--replay", "replay.bin"]
        _command("write", *store, *users, "--no-sync", cwd=where)
        _command("export", *store, "--out", out, *extra, cwd=where)
    return where


def python_blocks(document: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", document.read_text(), re.M | re.S)


def run_blocks(document: Path) -> dict[str, Any]:
    """Run the document's Python examples in order, in one namespace (in the current directory);
    an example that reads from S3 (it names a bucket of its own) is left to
    ``test_the_readmes_s3_example_reads_an_export_to_s3``, which gives it a loopback S3."""
    namespace: dict[str, Any] = {}
    for block in python_blocks(document):
        if "s3://" in block:
            continue
        exec(compile(block, str(document), "exec"), namespace)  # the docs' own examples
    return namespace


def test_the_readmes_examples_run_and_count_posts_not_rows(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's examples run as written; its counts are of posts made (creates), and its
    current state is the latest version of each post not deleted."""
    monkeypatch.chdir(exported)
    found = run_blocks(ROOT / "README.md")
    assert sorted(found["posts_by_author"]) == [(DOCS_A, 2), (DOCS_B, 1)]
    assert found["made"].height == 3
    assert sorted(found["current"].column("text").to_pylist()) == ["a reply", "first, edited"]
    assert sum(count for _, count in found["daily"]) == 3
    assert found["posts"].to_table(use_threads=False).num_rows == 5  # plain Parquet: every row


def test_the_dataset_guides_examples_run_and_count_right(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/datasets.md's examples run as written and give the scenario's true counts: creates,
    versions and deletes; likes across the two tables a like can be a row of; the current state
    three ways."""
    monkeypatch.chdir(exported)
    found = run_blocks(ROOT / "docs" / "datasets.md")
    assert (found["made"], found["edited"], found["deleted"]) == (3, 1, 1)
    assert dict(found["versions"])[P1] == 2
    assert found["choice"] == "erased"
    assert sum(count for _, count in found["daily"]) == 3
    assert (found["received"], found["from_study_users"], found["every_like"]) == (2, 1, 2)
    assert sorted(found["pairs"]) == [
        (DOCS_B, DOCS_A, 1),
        (DOCS_STRANGER, DOCS_A, 1),
    ]  # a link outlives a delete
    assert sorted(found["current_posts"]["text"].to_list()) == ["a reply", "first, edited"]
    assert len(found["latest_sql"]) == 2
    assert sorted(found["latest_polars"]["text"].to_list()) == ["a reply", "first, edited"]


_DOC_TYPES = {"string": "string", "int64": "int64", "bool": "bool", "timestamp": "timestamp[us, UTC]"}
_ROW = re.compile(r"^\| `(\w+)` \| ([^|]+?) \| (.+) \|$", re.M)


def documented_columns() -> dict[str, dict[str, str]]:
    """Per dataset named in a heading of docs/datasets.md, the columns (name -> type) of the
    tables under that heading; the common columns under "Columns every record table has"."""
    found: dict[str, dict[str, str]] = {}
    text = FENCE.sub("", (ROOT / "docs" / "datasets.md").read_text())
    for section in re.split(r"^(?=#{2,3} )", text, flags=re.M):
        heading = section.split("\n", 1)[0]
        columns = {name: kind for name, kind, _ in _ROW.findall(section)}
        names = re.findall(r"`([a-z_]+/[a-z_]+)`", heading)
        if "every record table has" in heading:
            names = ["*"]
        for name in names:
            found.setdefault(name, {}).update(columns)
    return found


def test_every_column_of_every_built_in_dataset_is_documented() -> None:
    """docs/datasets.md documents each built-in dataset's every column, with its type."""
    documented = documented_columns()
    missing = []
    for dataset in datasets_of(HANDLERS).values():
        columns = dict(documented.get(dataset.name, {}))
        if dataset.head_columns == COMMON_COLUMNS:
            columns |= documented["*"]
        for column in (*dataset.head_columns, *dataset.columns):
            kind = _DOC_TYPES.get(column.type, column.type)
            if columns.get(column.name) != kind:
                missing.append(f"{dataset.name}: {column.name} ({kind})")
        if columns.get("partition_date") != "date":
            missing.append(f"{dataset.name}: partition_date (date)")
    assert missing == []


def test_the_readmes_s3_example_reads_an_export_to_s3(
    tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's S3 example, run against a loopback S3 (an S3-compatible store, as its
    commented endpoint line says: that line filled in) after the docs' scenario is exported to
    ``s3://study-bucket/syncstream``: polars and deltalake read the posts."""
    import pyarrow.fs as pafs

    filesystem, _ = pafs.FileSystem.from_uri(f"s3://study-bucket?{s3_endpoint}&allow_bucket_creation=true")
    filesystem.create_dir("study-bucket")
    write_replay(tmp_path / "replay.bin", docs_frames())
    write_users(tmp_path / "study.txt", [DOCS_A, DOCS_B])
    store = ["--cache-dir", "cache", "--state", "cache.sqlite", "-q"]
    _command(
        "write", *store, "--study-users", "study.txt", "--replay", "replay.bin", "--no-sync", cwd=tmp_path
    )
    _command("export", *store, "--out", f"s3://study-bucket/syncstream?{s3_endpoint}", cwd=tmp_path)
    (block,) = [block for block in python_blocks(ROOT / "README.md") if "s3://" in block]
    endpoint = re.search(r"endpoint_override=([^&]+)", s3_endpoint)
    assert endpoint is not None
    line = '# "AWS_ENDPOINT_URL": "https://minio.example.org",'
    assert line in block
    local = f'"AWS_ENDPOINT_URL": "{endpoint.group(1)}", "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",'
    namespace: dict[str, Any] = {}
    exec(compile(block.replace(line, local), "README.md", "exec"), namespace)  # the README's example
    posts = namespace["posts"].filter(namespace["pl"].col("operation") == "create").collect()
    # three posts made; the deleted one's text erased at the export that brought its delete
    assert sorted(posts["text"].to_list(), key=str) == sorted([None, "a reply", "first"], key=str)
    assert namespace["table"].version() >= 0
