"""The package's public face."""

from __future__ import annotations

from pathlib import Path

import pytest

import syncstream
from tests.helpers import ROOT, corpus_frames


def test_all_is_sorted_and_complete() -> None:
    """__all__ is sorted (constants first, as ruff sorts) and every name in it resolves."""
    assert syncstream.__all__ == sorted(syncstream.__all__, key=lambda n: (not n.isupper(), n))
    for name in syncstream.__all__:
        assert getattr(syncstream, name) is not None


def test_issue_names_are_importable() -> None:
    """The names other pipelines import are there."""
    from syncstream import (  # noqa: F401
        HANDLERS,
        BatchExportContext,
        CacheWriteContext,
        FollowStatus,
        HandlerConfig,
        HandlerKey,
        Operation,
        RecordType,
        setup_batch_export_system,
        setup_cache_write_system,
    )

    assert syncstream.__version__ == "0.1.0"


def test_public_names_come_from_their_modules() -> None:
    """Each public name is the object its module defines (resolved on first use)."""
    from syncstream import errors
    from syncstream.registry import builtin, records, types
    from syncstream.write import context

    assert syncstream.HANDLERS is builtin.HANDLERS
    assert syncstream.setup_cache_write_system is context.setup_cache_write_system
    assert syncstream.ConfigError is errors.ConfigError
    assert syncstream.CachedRecord is records.CachedRecord
    assert syncstream.HandlerKey is types.HandlerKey
    assert set(syncstream.__all__) <= set(dir(syncstream))


def test_entries_and_frames_are_built_through_the_face(tmp_path: Path) -> None:
    """The builders of a registry's entries, of a dataset's columns and of test inputs are public,
    keyword-only, and build what the registry and the writer take."""
    from syncstream import (
        HANDLERS,
        Dataset,
        OpSpec,
        check_registry,
        commit_frame,
        create_handler,
        delete_handler,
        head_column,
        view_column,
        write_replay,
    )
    from syncstream.firehose.replay import iter_replay
    from syncstream.registry.selectors import author_in_study
    from syncstream.registry.views import block_view

    dataset = Dataset(
        name="mine/block",
        view=block_view,
        columns=(view_column("blocked_did"),),
        head_columns=(head_column("uri", nullable=False), head_column("subject_did")),
    )
    create = create_handler(
        key="mine", directory="mine/create", collection="app.bsky.graph.block", record_type="block",
        select=author_in_study, path_strategy=HANDLERS["block"].path_strategy, dataset=dataset,
        delete="mine_delete",
    )  # fmt: skip
    delete = delete_handler(key="mine_delete", create=create, directory="mine/delete", select=author_in_study)
    check_registry({"mine": create, "mine_delete": delete})
    assert (delete.operation, delete.dataset, delete.delete, delete.collection) == (
        "delete", dataset, None, "app.bsky.graph.block"
    )  # fmt: skip
    with pytest.raises(TypeError):
        create_handler("mine", "mine/create")  # type: ignore[call-arg]  # the misuse under test
    frames = [commit_frame(seq=7, repo="did:plc:a", ops=[OpSpec("delete", "app.bsky.graph.block/3b")])]
    assert list(iter_replay(write_replay(tmp_path / "r.bin", frames))) == frames


def test_the_library_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/library.md's example, as written (a local directory for its S3 URI), writes the
    sample frames and exports them."""
    library = (ROOT / "docs" / "library.md").read_text()
    section = library.split("## Writing and exporting from Python", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "handlers=HANDLERS" in code and "process_frames(frames)" in code
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.txt").write_text((ROOT / "syncstream/data/sample_study_users.txt").read_text())
    namespace = {"frames": corpus_frames()}
    exec(compile(code.replace("s3://bucket/prefix", "out"), "docs/library.md", "exec"), namespace)
    summary, written = namespace["summary"], sum(namespace["writer"].files.values())  # type: ignore[attr-defined]
    assert summary.rows == summary.cache_files == written == 12  # type: ignore[attr-defined]
    # one file per dataset, by date partition (the study's record, derived from the state, aside)
    assert len(list((tmp_path / "out").rglob("partition_date=*/*.parquet"))) == len(summary.datasets)  # type: ignore[attr-defined]
