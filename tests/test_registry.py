"""Registries are per instance: two systems with different registries, side by side in one
process, fed the same frames, write and export differently, and neither touches a global."""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.dataset as pads
import pytest

from syncstream import (
    HANDLERS,
    ConfigError,
    HandlerConfig,
    HandlerKey,
    paths,
    setup_batch_export_system,
)
from syncstream import setup_cache_write_system as setup_write
from syncstream.datasets import Column, Dataset
from syncstream.export.batch import export_batch
from syncstream.records import CachedRecord
from syncstream.views import post_view
from syncstream.write.writer import CacheWriter
from tests.helpers import tree, write_users
from tests.test_export import EXPECTED, FRIEND, STUDY, scenario

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
CUSTOM: Mapping[HandlerKey, HandlerConfig] = {
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
    return {str(p.parent.parent.relative_to(out)) for p in out.rglob("*.parquet")}


def test_two_registries_side_by_side(tmp_path: Path) -> None:
    """The same frames, interleaved into two systems: one collects no in-network posts at all,
    the other names and nests study posts its own way and exports them to its own dataset."""
    study = write_users(tmp_path / "study.txt", [STUDY])
    network = write_users(tmp_path / "net.txt", [FRIEND])
    contexts = [
        setup_write(tmp_path / name / "cache", tmp_path / name / "s.sqlite", study_users=study,
                    in_network_users=network, handlers=registry)
        for name, registry in (("plain", WITHOUT_IN_NETWORK), ("custom", CUSTOM))
    ]  # fmt: skip
    try:
        writers = [CacheWriter(context, durable=False) for context in contexts]
        for frame in scenario():
            for writer in writers:
                writer.process_frame(frame)
        for writer in writers:
            writer.flush()
    finally:
        for context in contexts:
            context.close()
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
        export = setup_batch_export_system(
            root / "cache", root / "s.sqlite", str(root / "out"), handlers=registry, helper_process=True
        )
        try:
            export_batch(export)
        finally:
            export.close()
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
    with pytest.raises(ConfigError, match="custom/odd cannot be sent to the Parquet helper"):
        setup_batch_export_system(tmp_path / "cache", tmp_path / "s.sqlite", str(tmp_path / "out"),
                                  handlers=registry, helper_process=True)  # fmt: skip
    setup_batch_export_system(
        tmp_path / "cache", tmp_path / "s.sqlite", str(tmp_path / "out"), handlers=registry
    ).close()


def test_a_registry_that_cannot_work_is_refused_at_set_up(tmp_path: Path) -> None:
    """Both systems check the registry they are given before they touch the cache."""
    broken = {key: config for key, config in HANDLERS.items() if key != K.DELETE_LIKE}
    with pytest.raises(ConfigError, match="names delete_like as its delete"):
        setup_write(tmp_path / "cache", tmp_path / "s.sqlite", handlers=broken)
    assert not (tmp_path / "cache" / "study_user_activity").exists()
    (tmp_path / "cache").mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match="names delete_like as its delete"):
        setup_batch_export_system(
            tmp_path / "cache", tmp_path / "s.sqlite", str(tmp_path / "out"), handlers=broken
        )
