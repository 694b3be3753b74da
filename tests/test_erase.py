"""Deletes honoured: a deleted record's content (record_json and every column taken from the
record) is erased from every version of it at the export that brings the delete, whether its
create came in the same run or an earlier one; the rows stay as events and no file under the
output holds the content, history included. --keep-deleted-content keeps it, and each table's
properties say which was done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from deltalake import DeltaTable

from syncstream.firehose.encode import OpSpec
from syncstream.lake.delta import location
from syncstream.lake.erase import content_columns, deleted_content
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.handlers import datasets_of
from tests.helpers import commit, like, post, write_replay, write_users
from tests.tables import stray_files, table_rows

STUDY = "did:plc:studystudystudystudystu"
OTHER = "did:plc:otherotherotherotherothe"
POSTS = "study_user_activity/post"
LIKES_ON = "study_user_activity/like_on_user_post"
SECRET = "secret words the author took back"


def uri(rkey: str, author: str = STUDY, collection: str = "app.bsky.feed.post") -> str:
    return f"at://{author}/{collection}/{rkey}"


def creates(first_seq: int) -> list[bytes]:
    """Three posts (one of them updated), a like by another account on the second."""
    return [
        commit(first_seq, STUDY, OpSpec("create", "app.bsky.feed.post/kept", post("kept words"))),
        commit(first_seq + 1, STUDY, OpSpec("create", "app.bsky.feed.post/gone", post(SECRET))),
        commit(first_seq + 2, STUDY, OpSpec("create", "app.bsky.feed.post/edited", post(f"{SECRET} 1"))),
        commit(first_seq + 3, STUDY, OpSpec("update", "app.bsky.feed.post/edited", post(f"{SECRET} 2"))),
        commit(first_seq + 4, OTHER, OpSpec("create", "app.bsky.feed.like/l1", like(uri("gone")))),
    ]


def deletes(first_seq: int) -> list[bytes]:
    """The second and third posts deleted, and the like withdrawn."""
    return [
        commit(first_seq, STUDY, OpSpec("delete", "app.bsky.feed.post/gone")),
        commit(first_seq + 1, STUDY, OpSpec("delete", "app.bsky.feed.post/edited")),
        commit(first_seq + 2, OTHER, OpSpec("delete", "app.bsky.feed.like/l1")),
    ]


def run(module: str, root: Path, *args: str) -> None:
    store = ["--cache-dir", str(root / "cache"), "--state", str(root / "state.sqlite"), "-q"]
    result = subprocess.run(
        [sys.executable, "-m", module, *store, *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def write(root: Path, frames: list[bytes], name: str) -> None:
    study = write_users(root / "study.txt", [STUDY])
    replay = write_replay(root / f"{name}.bin", frames)
    run("syncstream.write", root, "--replay", str(replay), "--study-users", str(study), "--no-sync")


def export(root: Path, *extra: str) -> None:
    run("syncstream.export", root, "--out", str(root / "out"), *extra)


def by_uri(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault((row["uri"], row["operation"]), []).append(row)
    return found


def files_holding(out: Path, needle: str) -> list[str]:
    """Every Parquet file under the output (named by a log or not) with a string value that
    contains ``needle``, and every log file whose text does."""
    found = []
    for path in sorted(out.rglob("*")):
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            for column in table.columns:
                if any(needle in str(value) for value in column.to_pylist() if value is not None):
                    found.append(str(path.relative_to(out)))
                    break
        elif path.is_file() and needle in path.read_text(errors="replace"):
            found.append(str(path.relative_to(out)))
    return found


def assert_erased(out: Path) -> None:
    """The deleted records' versions are rows with their content null; the rest is intact."""
    dataset = datasets_of(HANDLERS)[POSTS]
    rows = by_uri(table_rows(out, POSTS))
    assert sorted(rows) == sorted(
        [(uri(k), "create") for k in ("kept", "gone", "edited")]
        + [(uri("edited"), "update"), (uri("gone"), "delete"), (uri("edited"), "delete")]
    )
    content = content_columns(dataset)
    assert "text" in content and "record_json" in content
    for key in [(uri("gone"), "create"), (uri("edited"), "create"), (uri("edited"), "update")]:
        [row] = rows[key]
        assert {name: row[name] for name in content} == dict.fromkeys(content)
        assert row["author_did"] == STUDY and row["cid"] is not None and row["event_time"] is not None
    [kept] = rows[(uri("kept"), "create")]
    assert kept["text"] == "kept words"
    [liked] = table_rows(out, LIKES_ON)[:1]
    assert liked["subject_uri"] is None and liked["record_json"] is None  # the like was deleted too
    assert liked["subject_did"] == STUDY  # the study user it was on: what a withdrawal needs
    assert files_holding(out, "secret words") == []
    assert stray_files(out) == []
    assert deleted_content(location(str(out), POSTS)) == "erased"


def test_a_delete_in_the_same_run_as_its_create_erases_it(tmp_path: Path) -> None:
    """Creates, an update and their deletes exported together: the versions stay as rows
    without content, and no file under the output holds it."""
    write(tmp_path, creates(100) + deletes(200), "all")
    export(tmp_path)
    assert_erased(tmp_path / "out")


def test_a_delete_in_a_later_run_erases_what_an_earlier_one_exported(tmp_path: Path) -> None:
    """A delete exported after its create's run erases the create already in the table; the
    table's history before the erase can no longer be read."""
    write(tmp_path, creates(100), "creates")
    export(tmp_path)
    out = tmp_path / "out"
    [before] = [r for r in table_rows(out, POSTS) if r["uri"] == uri("gone")]
    assert before["text"] == SECRET
    write(tmp_path, deletes(200), "deletes")
    export(tmp_path)
    assert_erased(out)
    assert readable_texts(out / POSTS) == {"kept words"}


def readable_texts(table_dir: Path) -> set[str]:
    """The texts every version of the table's history still gives, where it can be read at
    all (a version whose files were vacuumed cannot); at least one version cannot."""
    latest = DeltaTable(str(table_dir)).version()
    texts: set[str] = set()
    unreadable = 0
    for version in range(latest + 1):
        table = DeltaTable(str(table_dir), version=version)
        try:
            rows = table.to_pyarrow_dataset().to_table(columns=["text"], use_threads=False)
        except OSError:
            unreadable += 1
            continue
        finally:
            del table
        texts.update(t for t in rows.column("text").to_pylist() if t is not None)
    assert unreadable
    return texts


def test_keep_deleted_content_keeps_it_and_the_table_says_so(tmp_path: Path) -> None:
    """--keep-deleted-content leaves every version's content; the tables' properties record
    `kept`, and keep it after a later export that erases (what was kept stays)."""
    write(tmp_path, creates(100) + deletes(200), "all")
    export(tmp_path, "--keep-deleted-content")
    out = tmp_path / "out"
    rows = by_uri(table_rows(out, POSTS))
    assert rows[(uri("gone"), "create")][0]["text"] == SECRET
    assert {
        r["text"] for key in [(uri("edited"), "create"), (uri("edited"), "update")] for r in rows[key]
    } == {
        f"{SECRET} 1",
        f"{SECRET} 2",
    }
    assert deleted_content(location(str(out), POSTS)) == "kept"
    write(tmp_path, [commit(300, STUDY, OpSpec("delete", "app.bsky.feed.post/kept"))], "later")
    export(tmp_path)
    assert deleted_content(location(str(out), POSTS)) == "kept"
    [kept] = [r for r in table_rows(out, POSTS) if r["uri"] == uri("kept") and r["operation"] == "create"]
    assert kept["text"] is None  # this export's own delete was erased


def test_a_plain_parquet_output_keeps_deleted_content_and_says_so(tmp_path: Path) -> None:
    """--format parquet has no log to rewrite through: the content stays, with a warning."""
    write(tmp_path, creates(100) + deletes(200), "all")
    store = ["--cache-dir", str(tmp_path / "cache"), "--state", str(tmp_path / "state.sqlite")]
    arguments = [sys.executable, "-m", "syncstream.export", *store, "--out", str(tmp_path / "out")]
    result = subprocess.run([*arguments, "--format", "parquet"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "a plain-Parquet output keeps deleted records' content" in result.stderr
    assert files_holding(tmp_path / "out", "secret words")
