"""Registries are per instance: two systems with different registries, side by side in one
process, fed the same frames, write and export differently, and neither touches a global."""

from __future__ import annotations

import contextlib
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.dataset as pads
import pytest

from syncstream import (
    HANDLERS,
    Column,
    ConfigError,
    Dataset,
    HandlerKey,
    Operation,
    Registry,
    check_registry,
    commit_frame,
    create_handler,
    delete_handler,
    head_column,
    setup_batch_export_system,
    view_column,
)
from syncstream import setup_cache_write_system as setup_write
from syncstream.cache import read_records, write_record
from syncstream.export.batch import export_batch
from syncstream.registry import paths, reading, selectors
from syncstream.registry.records import CachedRecord
from syncstream.registry.views import block_view, post_view
from syncstream.store import StateStore
from syncstream.write.writer import CacheWriter
from tests.helpers import TIME, export_options, like, post, tree, write_users
from tests.scenario import EXPECTED, FRIEND, P1, STUDY, scenario

K = HandlerKey
IN_NETWORK = "in_network_user_activity/post"


def by_rkey(record: CachedRecord) -> str:
    """A custom path strategy: a post's file named by its rkey alone."""
    return f"{record.rkey}.json"


SHORT_POSTS = Dataset(
    name="custom/short_post",
    view=post_view,
    columns=(Column(name="text", type="string", value=attrgetter("text")),),
)
WITHOUT_IN_NETWORK = {key: config for key, config in HANDLERS.items() if config.dataset.name != IN_NETWORK}
CUSTOM: Registry = {
    **HANDLERS,
    K.POST: msgspec.structs.replace(
        HANDLERS[K.POST],
        path_strategy=by_rkey,
        nested_path=paths.author_directory,
        dataset=SHORT_POSTS,
    ),
    K.DELETE_POST: msgspec.structs.replace(HANDLERS[K.DELETE_POST], dataset=SHORT_POSTS),
}


def rows(out: Path, name: str) -> list[dict[str, Any]]:
    """A dataset's rows, but for the time each system received them."""
    table = pads.dataset(out / name, format="parquet", partitioning="hive").to_table()
    found = [{k: v for k, v in row.items() if k != "synctimestamp"} for row in table.to_pylist()]
    return sorted(found, key=str)


def datasets(out: Path) -> set[str]:
    # the cache's datasets, by their date partitions (not the study's record, derived from the state)
    return {str(p.parent.parent.relative_to(out)) for p in out.rglob("partition_date=*/*.parquet")}


def test_two_registries_side_by_side(tmp_path: Path) -> None:
    """The same frames, interleaved into two systems: one collects no in-network posts at all,
    the other names and nests study posts its own way and exports them to its own dataset."""
    study = write_users(tmp_path / "study.txt", [STUDY])
    network = write_users(tmp_path / "net.txt", [FRIEND])
    with contextlib.ExitStack() as stack:
        contexts = [
            stack.enter_context(setup_write(tmp_path / name / "cache", tmp_path / name / "s.sqlite",
                                            study_users=study, in_network_users=network, handlers=registry))
            for name, registry in (("plain", WITHOUT_IN_NETWORK), ("custom", CUSTOM))
        ]  # fmt: skip
        writers = [CacheWriter(context, durable=False) for context in contexts]
        for frame in scenario():
            for writer in writers:
                writer.process_frame(frame)
        for writer in writers:
            writer.flush()
    plain, custom = tree(tmp_path / "plain" / "cache"), tree(tmp_path / "custom" / "cache")
    assert not (tmp_path / "plain" / "cache" / "in_network_user_activity").exists()
    assert plain - custom == {
        "study_user_activity/create/post/author_did=did:plc:study_post_uri_suffix=3p1.json"
    }
    assert custom - plain == {
        "study_user_activity/create/post/did:plc:study/3p1.json",
        "in_network_user_activity/create/post/did:plc:friend/author_did=did:plc:friend_post_uri_suffix=3n1.json",
        "in_network_user_activity/delete/post/did:plc:friend/author_did=did:plc:friend_post_uri_suffix=3n1.json",
    }

    for name, registry in (("plain", WITHOUT_IN_NETWORK), ("custom", CUSTOM)):
        root = tmp_path / name
        with setup_batch_export_system(
            export_options(root), handlers=registry, helper_process=True
        ) as export:
            export_batch(export)
        assert tree(root / "cache") == set()
    plain_out, custom_out = tmp_path / "plain" / "out", tmp_path / "custom" / "out"
    assert datasets(plain_out) == set(EXPECTED) - {IN_NETWORK}
    assert datasets(custom_out) == set(EXPECTED) - {"study_user_activity/post"} | {"custom/short_post"}
    for name in datasets(plain_out) & datasets(custom_out):
        assert rows(plain_out, name) == rows(custom_out, name), name
    short = rows(custom_out, "custom/short_post")
    assert [(r["operation"], r["text"]) for r in short] == [("create", "hello #world"), ("delete", None)]
    assert list(short[0])[-2:] == ["text", "partition_date"]
    assert [r["uri"] for r in rows(plain_out, "study_user_activity/post")] == [r["uri"] for r in short]


def test_the_default_registry_is_untouched() -> None:
    """Building other registries changed nothing in HANDLERS."""
    assert HANDLERS[K.POST].path_strategy is paths.post_file_name
    assert HANDLERS[K.POST].dataset.name == "study_user_activity/post"
    assert K.IN_NETWORK_POST in HANDLERS


def test_a_dataset_the_helper_cannot_import_is_refused(tmp_path: Path) -> None:
    """A dataset with a lambda cannot be sent to the Parquet helper: set-up says so; inline it works."""
    odd = Dataset(
        name="custom/odd", view=post_view, columns=(Column(name="n", type="int64", value=lambda v: 1),)
    )
    registry = {**HANDLERS, K.POST: msgspec.structs.replace(HANDLERS[K.POST], dataset=odd),
                K.DELETE_POST: msgspec.structs.replace(HANDLERS[K.DELETE_POST], dataset=odd)}  # fmt: skip
    (tmp_path / "cache").mkdir()
    StateStore(tmp_path / "s.sqlite").close()  # the writer's part: an export creates no store
    with pytest.raises(ConfigError, match="custom/odd cannot be sent to the Parquet helper"):
        setup_batch_export_system(export_options(tmp_path), handlers=registry, helper_process=True)
    setup_batch_export_system(export_options(tmp_path), handlers=registry).close()


def test_a_registry_that_cannot_work_is_refused_at_set_up(tmp_path: Path) -> None:
    """Both systems check the registry they are given before they touch the cache."""
    broken = {key: config for key, config in HANDLERS.items() if key != K.DELETE_LIKE}
    with pytest.raises(ConfigError, match="names delete_like as its delete"):
        setup_write(tmp_path / "cache", tmp_path / "s.sqlite", handlers=broken)
    assert not (tmp_path / "cache" / "study_user_activity").exists()
    (tmp_path / "cache").mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match="names delete_like as its delete"):
        setup_batch_export_system(export_options(tmp_path), handlers=broken)


# Keys are names, and what a registry cannot do is refused at set-up -------------------------


def test_plain_string_keys_write_every_op_of_a_commit(tmp_path: Path) -> None:
    """A registry keyed by plain strings writes a commit whole: before, the first write raised
    on ``key.value`` and the ops after it were never written while the cursor moved on."""
    registry = {  # the names of the built-in handlers, as plain strings, keys and configs alike
        str(key): msgspec.structs.replace(config, key=str(key), delete=config.delete and str(config.delete))
        for key, config in HANDLERS.items()
    }
    assert {type(config.key) for config in registry.values()} == {str}
    study = write_users(tmp_path / "study.txt", [STUDY])
    with setup_write(
        tmp_path / "cache", tmp_path / "s.sqlite", study_users=study, handlers=registry
    ) as context:
        frame = commit_frame(
            seq=1,
            repo=STUDY,
            ops=[
                ("create", "app.bsky.feed.post/3p1", post()),
                ("create", "app.bsky.feed.like/3l1", like(P1)),
            ],
        )
        summary = CacheWriter(context, durable=False).process_frames([frame])
    assert (summary.files, summary.rejections) == ({"post": 1, "like": 1, "like_on_user_post": 1}, {})


BLOCKS_OF_STUDY = Dataset(name="custom/blocked_by", view=block_view, columns=(view_column("blocked_did"),))
BLOCKED_BY = create_handler(
    key="blocked_by_stranger",
    directory="custom/create/blocked_by",
    collection="app.bsky.graph.block",
    record_type="blocked_by",
    select=selectors.subject_in_study,
    path_strategy=paths.block_file_name,
    dataset=BLOCKS_OF_STUDY,
    delete="unblocked_by_stranger",
)
UNBLOCKED_BY = delete_handler(
    key="unblocked_by_stranger", create=BLOCKED_BY, directory="custom/delete/blocked_by"
)


def test_a_strangers_delete_routes_through_a_users_own_key(tmp_path: Path) -> None:
    """A stranger blocks a study user, then unblocks: the unblock is found in the index under the
    user's own handler name and written (before: a name no HandlerKey had was dropped silently)."""
    registry = {"blocked_by_stranger": BLOCKED_BY, "unblocked_by_stranger": UNBLOCKED_BY}
    block = {"$type": "app.bsky.graph.block", "subject": STUDY, "createdAt": "2026-05-25T14:23:27.379Z"}
    study = write_users(tmp_path / "study.txt", [STUDY])
    with setup_write(
        tmp_path / "cache", tmp_path / "s.sqlite", study_users=study, handlers=registry
    ) as context:
        writer = CacheWriter(context, durable=False)
        writer.process_frames(
            [commit_frame(seq=1, repo=FRIEND, ops=[("create", "app.bsky.graph.block/3b", block)])]
        )
        summary = writer.process_frames(
            [commit_frame(seq=2, repo=FRIEND, ops=[("delete", "app.bsky.graph.block/3b")])]
        )
    assert summary.files == {"blocked_by_stranger": 1, "unblocked_by_stranger": 1}
    assert tree(tmp_path / "cache") == {
        f"custom/create/blocked_by/author_did={FRIEND}_block_uri_suffix=3b.json",
        f"custom/delete/blocked_by/author_did={FRIEND}_block_uri_suffix=3b.json",
    }


def test_replacing_only_the_nesting_keeps_every_file_readable(tmp_path: Path) -> None:
    """The read strategy follows the nesting: a config whose nested_path alone is replaced finds
    every file it writes (before, it kept the flat reader and its files were never exported)."""
    config = msgspec.structs.replace(HANDLERS[K.POST], nested_path=paths.author_directory)
    assert config.read_strategy is reading.read_nested
    assert HANDLERS[K.POST].read_strategy is reading.read_flat
    record = CachedRecord(
        uri=P1, cid=None, author_did=STUDY, rkey="3p1", collection="app.bsky.feed.post", operation=Operation.CREATE,
        record_type="post", seq=1, rev="3mptbypluud2a", event_time=TIME, synctimestamp=TIME, nested_key=STUDY,
    )  # fmt: skip
    path = write_record(str(tmp_path), config, record)
    assert list(read_records(str(tmp_path), config)) == [(path, record)]


def test_a_column_the_head_does_not_carry_is_refused() -> None:
    """Head columns are checked against the head the export reads (``FileHead``): ``nested_key``
    is in a cache file but not in its head, so it is refused when declared, and a dataset that
    reads it anyway is refused by check_registry (before: set-up passed, the export raised)."""
    with pytest.raises(ValueError, match="nested_key is not a field of a cache file's head"):
        head_column("nested_key")
    assert head_column("subject_did").value.__class__ is attrgetter
    odd = msgspec.structs.replace(
        HANDLERS[K.POST].dataset,
        name="custom/odd",
        head_columns=(Column(name="nested_key", type="string", value=attrgetter("nested_key")),),
    )
    registry = {**HANDLERS, K.POST: msgspec.structs.replace(HANDLERS[K.POST], dataset=odd),
                K.DELETE_POST: msgspec.structs.replace(HANDLERS[K.DELETE_POST], dataset=odd)}  # fmt: skip
    with pytest.raises(
        ConfigError, match="dataset custom/odd: column nested_key is not of the cache file's head"
    ):
        check_registry(registry)
    typo = msgspec.structs.replace(odd, head_columns=(), columns=(view_column("txet"),))
    with pytest.raises(ConfigError, match="column txet is not of the dataset's view"):
        check_registry({K.POST: msgspec.structs.replace(HANDLERS[K.POST], dataset=typo, delete=None)})


def test_a_column_of_the_record_that_is_not_nullable_is_refused() -> None:
    """A delete erases every column taken from the record, so such a column must take nulls:
    one declared non-nullable is refused when the registry is checked."""
    strict = msgspec.structs.replace(
        HANDLERS[K.POST].dataset, name="custom/strict", columns=(view_column("text", nullable=False),)
    )
    with pytest.raises(ConfigError, match="column text is of the record and not nullable"):
        check_registry({K.POST: msgspec.structs.replace(HANDLERS[K.POST], dataset=strict, delete=None)})
    kept = view_column("text", nullable=False, from_record=False)
    check_registry(
        {
            K.POST: msgspec.structs.replace(
                HANDLERS[K.POST], dataset=msgspec.structs.replace(strict, columns=(kept,)), delete=None
            )
        }
    )


@pytest.mark.parametrize("key", [1, None, "", b"post"])
def test_a_key_that_is_not_a_name_is_refused(key: object) -> None:
    """Keys are names: anything but a non-empty string is refused, naming it."""
    config = msgspec.structs.replace(HANDLERS[K.POST], key=key, delete=None)
    with pytest.raises(ConfigError, match="is not a non-empty string"):
        check_registry({key: config})  # type: ignore[dict-item]
