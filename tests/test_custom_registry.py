"""A user's own registry, from a module outside the package: docs/library.md's example run as written,
through every command (``--handlers``, ``SYNCSTREAM_HANDLERS``) and through the library; and what
a registry that does not cover the store meets instead of losing or leaking it."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow.dataset as pads
import pytest

from syncstream import (
    HANDLERS,
    OpSpec,
    commit_frame,
    setup_batch_export_system,
    setup_cache_write_system,
    write_replay,
)
from syncstream.backfill.__main__ import main as backfill_main
from syncstream.errors import ConfigError
from syncstream.export.__main__ import main as export_main
from syncstream.export.batch import export_batch
from syncstream.firehose.replay import iter_replay
from syncstream.purge.__main__ import main as purge_main
from syncstream.servers.pds import LoopbackPds
from syncstream.store import StateStore
from syncstream.store.cache_home import MARK
from syncstream.write.__main__ import main as write_main
from syncstream.write.writer import CacheWriter
from tests.helpers import CORPUS, ROOT, export_options, tree

LIBRARY = (ROOT / "docs" / "library.md").read_text()
SECTION = LIBRARY.split("## Adding a record type", 1)[1].split("\n## ", 1)[0]
MODULE, BUILD = re.findall(r"```python\n(.*?)```", SECTION, re.S)
[SHELL] = re.findall(r"```sh\n(.*?)```", SECTION, re.S)
STARS = "study_user_activity/star"
STAR_DIRS = {"study_user_activity/create/star", "study_user_activity/delete/star"}


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory outside the package with the documented module, study file and replay."""
    home = tmp_path / "elsewhere"
    home.mkdir()
    (home / "stars.py").write_text(MODULE)
    monkeypatch.chdir(home)
    exec(compile(BUILD, "docs/library.md", "exec"), {})
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture
def stars(user_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The documented module imported by name, as --handlers does (the helper finds it on PYTHONPATH)."""
    monkeypatch.syspath_prepend(str(user_dir))
    monkeypatch.setenv("PYTHONPATH", str(user_dir))
    yield importlib.import_module("stars")
    sys.modules.pop("stars", None)


def rows(out: Path, name: str) -> list[dict[str, Any]]:
    if not (out / name).exists():
        return []
    table = pads.dataset(out / name, format="parquet", partitioning="hive").to_table()
    return sorted(table.to_pylist(), key=lambda r: r["operation"])


def run(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A shell command as a user types it, with this interpreter's ``python`` first on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    clean = {k: v for k, v in os.environ.items() if k not in ("SYNCSTREAM_HANDLERS", "PYTHONPATH")}
    return subprocess.run(
        ["bash", "-c", command],
        check=False,
        cwd=cwd,
        env={**clean, "PATH": path, **env},
        capture_output=True,
        text=True,
    )


def test_the_readme_example_runs_through_the_commands(user_dir: Path) -> None:
    """The documented module, shell lines and replay, as written: the writer and the export (with
    its Parquet helper) import the module by name and write the star and its delete as rows
    (the delete erasing the star's content, its view's columns included);
    the purge, given the same registry, takes them out again."""
    done = run(SHELL, user_dir)
    assert done.returncode == 0, done.stderr
    assert "study_user_activity/star: 2 rows" in done.stdout
    found = rows(user_dir / "syncstream-parquet", STARS)
    # the star was deleted: its create stays a row, its content (the view's columns) erased
    assert [(r["operation"], r["subject_uri"], r["created_at"], r["record_json"]) for r in found] == [
        ("create", None, None, None),
        ("delete", None, None, None),
    ]
    assert found[0]["cid"] is not None
    assert {r["collection"] for r in found} == {"sh.tangled.feed.star"}
    assert tree(user_dir / "syncstream-cache") == set()
    purged = run(
        SHELL.split("\n")[0] + "\npython -m syncstream.purge --did did:plc:ewvi7nxzyoun6zhxrhs64oiz", user_dir
    )
    assert purged.returncode == 0, purged.stderr
    assert "study_user_activity/star: 2 rows" in purged.stdout
    assert rows(user_dir / "syncstream-parquet", STARS) == []


def test_the_readme_example_runs_through_the_library(stars: ModuleType, user_dir: Path) -> None:
    """The same module given as handlers= to both systems: the star is written, then exported by
    a Parquet helper that imports the module's view by name."""
    with setup_cache_write_system(
        user_dir / "cache", user_dir / "s.sqlite", study_users=user_dir / "study.txt", handlers=stars.REGISTRY
    ) as context:
        summary = CacheWriter(context, durable=False).process_frames(iter_replay(user_dir / "stars.bin"))
    assert summary.files == {"star": 1, "delete_star": 1}
    assert {p.rsplit("/", 1)[0] for p in tree(user_dir / "cache")} == STAR_DIRS
    with setup_batch_export_system(
        export_options(user_dir), helper_process=True, handlers=stars.REGISTRY
    ) as export:
        assert export_batch(export).datasets[STARS].rows == 2
    assert [r["operation"] for r in rows(user_dir / "out", STARS)] == ["create", "delete"]


def _written_with_stars(stars: ModuleType, user_dir: Path) -> list[str]:
    """Cache files of the star handlers (and none other), written through the library; the
    store and cache options of every command."""
    with setup_cache_write_system(
        user_dir / "cache", user_dir / "s.sqlite", study_users=user_dir / "study.txt", handlers=stars.REGISTRY
    ) as context:
        CacheWriter(context, durable=False).process_frames(iter_replay(user_dir / "stars.bin"))
    return ["--cache-dir", str(user_dir / "cache"), "--state", str(user_dir / "s.sqlite"), "-q"]


def test_every_command_refuses_a_registry_without_what_wrote(
    stars: ModuleType, user_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the star handlers wrote, each command given the built-in registry exits 2 naming
    them and the way on, and nothing is lost: no file exported, moved or deleted
    (--clear-cache included)."""
    store = _written_with_stars(stars, user_dir)
    before = tree(user_dir / "cache")
    out = ["--out", str(user_dir / "out")]
    commands = [
        (write_main, [*store, "--replay", str(user_dir / "stars.bin"), "--no-sync"]),
        (export_main, [*store, *out]),
        (export_main, [*store, *out, "--clear-cache"]),
        (purge_main, [*store, *out, "--did", "did:plc:ewvi7nxzyoun6zhxrhs64oiz"]),
        (backfill_main, [*store, "--did", "did:plc:ewvi7nxzyoun6zhxrhs64oiz"]),
    ]
    for main, args in commands:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(
            "error: the registry given lacks handlers delete_star, star"
        )
        assert "--handlers MODULE:NAME or SYNCSTREAM_HANDLERS" in err[0]
    assert tree(user_dir / "cache") == before
    assert not (user_dir / "out").exists()
    assert export_main([*store, *out, "--handlers", "stars:REGISTRY"]) == 0
    assert tree(user_dir / "cache") == set()


def test_the_export_stops_at_folders_no_handler_reads(
    stars: ModuleType, user_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cache with the star folders and a store that does not know who wrote them (another
    store, say): the export and --clear-cache exit 2 naming the folders and keep every file.
    (Before: "exported" the rest, passed the stars over, and --clear-cache deleted them.)"""
    store = _written_with_stars(stars, user_dir)
    store[store.index("--state") + 1] = str(user_dir / "other.sqlite")
    StateStore(user_dir / "other.sqlite").close()  # another store, made by a writer
    (user_dir / "cache" / MARK).unlink()  # (a cache from before stores marked theirs)
    before = tree(user_dir / "cache")
    for extra in ([], ["--clear-cache"]):
        assert export_main([*store, "--out", str(user_dir / "out"), *extra]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert (
            line.startswith("error: the cache ")
            and "holds what no handler of the registry given reads: " in line
        )
        assert "study_user_activity/create/star/, study_user_activity/delete/star/;" in line
        assert tree(user_dir / "cache") == before


def test_a_purge_refuses_a_registry_without_a_dataset_it_exported(
    stars: ModuleType, user_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once the star dataset was exported, a purge without it would leave the account's stars:
    it exits 2 naming the dataset, and purges nobody."""
    store = _written_with_stars(stars, user_dir)
    out = ["--out", str(user_dir / "out")]
    assert export_main([*store, *out, "--handlers", "stars:REGISTRY"]) == 0
    capsys.readouterr()
    with StateStore(user_dir / "s.sqlite") as state:
        assert state.written_by.names()[1] >= {STARS}
    assert purge_main([*store, *out, "--did", "did:plc:ewvi7nxzyoun6zhxrhs64oiz"]) == 2
    assert f"datasets {STARS}, which wrote" in capsys.readouterr().err
    with StateStore(user_dir / "s.sqlite") as state:
        assert state.population.purged() == frozenset()


BAD_SPECS = {
    "stars": "give MODULE:NAME",
    "no_such_module_here:REGISTRY": "cannot import no_such_module_here",
    "stars:NOPE": "stars has no attribute NOPE",
    "stars:star_view": "star_view is not a registry",
    "broken:REGISTRY": "importing broken failed: ZeroDivisionError",
}


@pytest.mark.parametrize("spec", list(BAD_SPECS))
@pytest.mark.parametrize("command", ["write", "export", "purge", "backfill"])
def test_a_bad_handlers_spec_is_one_error_line(
    stars: ModuleType, user_dir: Path, capsys: pytest.CaptureFixture[str], command: str, spec: str
) -> None:
    """A spec that is not MODULE:NAME, a module that cannot be imported or fails, an attribute
    it lacks or one that is no registry: one error line naming it, exit 2, for every command."""
    (user_dir / "broken.py").write_text("1 / 0\n")
    (user_dir / "cache").mkdir()
    store = [
        "--cache-dir",
        str(user_dir / "cache"),
        "--state",
        str(user_dir / "s.sqlite"),
        "--handlers",
        spec,
    ]
    args = {
        "write": [
            *store,
            "--replay",
            str(user_dir / "stars.bin"),
            "--study-users",
            str(user_dir / "study.txt"),
        ],
        "export": [*store, "--out", str(user_dir / "out")],
        "purge": [*store, "--out", str(user_dir / "out"), "--did", "did:plc:ewvi7nxzyoun6zhxrhs64oiz"],
        "backfill": [*store, "--did", "did:plc:ewvi7nxzyoun6zhxrhs64oiz"],
    }[command]
    main = {"write": write_main, "export": export_main, "purge": purge_main, "backfill": backfill_main}[
        command
    ]
    assert main(args) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: --handlers {spec}") and BAD_SPECS[spec] in line
    assert tree(user_dir / "cache") == set()


def test_the_environment_names_the_registry(user_dir: Path) -> None:
    """SYNCSTREAM_HANDLERS is the default of --handlers: a bad one is refused as the option is."""
    done = run("python -m syncstream.export", user_dir, SYNCSTREAM_HANDLERS="stars:NOPE", PYTHONPATH=".")
    assert (done.returncode, done.stderr) == (
        2,
        "error: --handlers stars:NOPE: stars has no attribute NOPE\n",
    )


SCRIPT = """
import sys
from operator import attrgetter

import msgspec

from syncstream import HANDLERS, Column, ConfigError, Dataset, ExportOptions, setup_batch_export_system


def my_view(head):
    return head


MINE = Dataset(name="mine/post", view=my_view, columns=(Column(name="u", type="string", value=attrgetter("uri")),))
REGISTRY = {**HANDLERS, "post": msgspec.structs.replace(HANDLERS["post"], dataset=MINE),
            "delete_post": msgspec.structs.replace(HANDLERS["delete_post"], dataset=MINE)}
try:
    options = ExportOptions(cache_dir=sys.argv[1], state=sys.argv[2], out=sys.argv[3])
    setup_batch_export_system(options, handlers=REGISTRY, helper_process=True)
except ConfigError as error:
    print(error)
    sys.exit(2)
"""


def test_a_view_of_the_script_run_as_main_is_refused_at_set_up(tmp_path: Path) -> None:
    """A pipeline run as a script: its view would reach the Parquet helper as ``__main__.my_view``
    and kill it mid-export; set-up refuses it instead, naming the fix."""
    (tmp_path / "pipeline.py").write_text(SCRIPT)
    (tmp_path / "cache").mkdir()
    done = run("python pipeline.py cache s.sqlite out", tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "dataset mine/post cannot be sent to the Parquet helper (my_view is defined in the script"
        in done.stdout
    )
    assert "--handlers MODULE:NAME" in done.stdout


def test_a_registry_refused_by_check_registry_names_the_spec(
    stars: ModuleType, user_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A registry that is one but cannot work is refused with the spec that named it."""
    (user_dir / "halves.py").write_text("from stars import REGISTRY\nHALF = {'star': REGISTRY['star']}\n")
    assert export_main(["--cache-dir", str(user_dir), "--handlers", "halves:HALF"]) == 2
    assert "error: --handlers halves:HALF: star names delete_star as its delete" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="names delete_star"):
        setup_cache_write_system(
            user_dir / "c", user_dir / "s.sqlite", handlers={"star": stars.REGISTRY["star"]}
        )
    assert HANDLERS.keys() <= stars.REGISTRY.keys()


def test_the_backfill_routes_through_the_registry_given(
    stars: ModuleType, user_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A repository backfilled with --handlers: only what that registry takes is written (here,
    a registry of posts alone keeps the repository's posts and none of its likes or follows)."""
    (user_dir / "posts_only.py").write_text(
        "from syncstream import HANDLERS\nPOSTS = {k: HANDLERS[k] for k in ('post', 'delete_post')}\n"
    )
    did = "did:plc:53iucmf5ldftgqyf2ac7hmhd"
    (user_dir / "repo_user.txt").write_text(did + "\n")
    store = ["--cache-dir", str(user_dir / "c"), "--state", str(user_dir / "b.sqlite"), "-q"]
    StateStore(user_dir / "b.sqlite").close()  # the writer's part: a backfill creates no store
    from syncstream.servers.keys import REHEARSAL_SEED, SigningKey, resign_car

    key = SigningKey(REHEARSAL_SEED)  # the real records under a key the loopback PLC publishes
    with LoopbackPds({did: resign_car((CORPUS / "repo.car").read_bytes(), key)}, key=key) as pds:
        args = [*store, "--study-users", str(user_dir / "repo_user.txt"), "--plc-url", pds.url]
        assert backfill_main([*args, "--handlers", "posts_only:POSTS"]) == 0
    written = tree(user_dir / "c")
    assert len(written) == 6 and {p.rsplit("/", 1)[0] for p in written} == {"study_user_activity/create/post"}
    with StateStore(user_dir / "b.sqlite") as state:
        assert state.written_by.names()[0] == {"post"}


def test_an_interrupted_claim_of_folders_no_handler_reads_is_kept(tmp_path: Path) -> None:
    """An export killed mid-claim by a registry with stars, recovered by one without: set-up names
    the claimed folder and keeps its files (before, the recovery exported the rest of the claim
    and then removed the claim's directory, stars and all)."""
    claim = tmp_path / "cache" / ".export"
    star = claim / "00000000000000000001" / "study_user_activity/create/star/a.json"
    star.parent.mkdir(parents=True)
    star.write_text("{}")
    (claim / "00000000000000000001.claim").write_text("study_user_activity/create/star\n")
    message = (
        r"holds what no handler of the registry given reads: \.export/00000000000000000001/"
        r"study_user_activity/create/star/, \.export/00000000000000000001\.claim: study_user_activity/create/star;"
    )
    StateStore(tmp_path / "s.sqlite").close()  # the writer's part: an export creates no store
    with pytest.raises(ConfigError, match=message):
        setup_batch_export_system(export_options(tmp_path))
    assert star.read_text() == "{}"


def test_a_purge_erases_an_accounts_rows_from_datasets_its_registry_does_not_know(user_dir: Path) -> None:
    """Two stores share one output: the documented store writes stars, another (the built-in
    registry) the same account's posts. Purged from the second store, the account leaves the
    stars table too, by author: no dataset under the output keeps a row of it, and no byte of
    its DID is left in any file under the output (data or log)."""
    author = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
    done = run(SHELL, user_dir)
    assert done.returncode == 0, done.stderr
    assert [r["author_did"] for r in rows(user_dir / "syncstream-parquet", STARS)] == [author, author]
    other = user_dir / "other"
    post = commit_frame(
        seq=1, repo=author, rev="3mptbypluud2a", time="2026-07-04T14:38:07.517Z",
        ops=[OpSpec("create", "app.bsky.feed.post/3p", {"$type": "app.bsky.feed.post", "text": "hi",
                                                          "createdAt": "2026-07-04T14:38:07.517Z"})],
    )  # fmt: skip
    (other / "study.txt").parent.mkdir()
    (other / "study.txt").write_text(f"{author}\n")
    write_replay(other / "post.bin", [post])
    store = ["--cache-dir", str(other / "cache"), "--state", str(other / "s.sqlite")]
    out = ["--out", str(user_dir / "syncstream-parquet")]
    assert (
        write_main(
            [*store, "-q", "--study-users", str(other / "study.txt"), "--replay", str(other / "post.bin")]
        )
        == 0
    )
    assert export_main([*store, "-q", *out]) == 0
    assert purge_main([*store, *out, "--did", author]) == 0
    assert rows(user_dir / "syncstream-parquet", STARS) == []
    assert rows(user_dir / "syncstream-parquet", "study_user_activity/post") == []
    everything = [p for p in (user_dir / "syncstream-parquet").rglob("*") if p.is_file()]
    assert everything and not [p for p in everything if author.encode() in p.read_bytes()]
