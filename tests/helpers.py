"""Shared test helpers: where the fixtures are, the corpus frames, small scenario builders, and
waiting on a server or a process (a free port, an HTTP GET, a condition polled until it holds)."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import libipld

from syncstream.export.options import ExportOptions
from syncstream.firehose.encode import OpSpec, cid_for, encode_commit_frame
from syncstream.firehose.replay import iter_replay, write_frame
from syncstream.signals import StopRequest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("SYNCSTREAM_FIXTURES", ROOT.parent / "shared" / "fixtures"))
CORPUS = FIXTURES / "jetstream-corpus"
SYNTAX = FIXTURES / "atproto-interop-tests" / "syntax"
TIME = "2026-07-04T14:38:07.517Z"


@cache
def corpus_frames() -> tuple[bytes, ...]:
    return tuple(iter_replay(CORPUS / "frames.bin.zst"))


def jetstream_events() -> list[dict[str, Any]]:
    with open(CORPUS / "expected_v1.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def golden_record(collection: str) -> dict[str, Any]:
    """A real record of ``collection`` from the corpus' Jetstream golden file (JSON data model)."""
    with open(CORPUS / "golden_v1.jsonl", encoding="utf-8") as handle:
        for line in handle:
            commit = json.loads(line).get("commit") or {}
            if commit.get("collection") == collection and commit.get("record") is not None:
                record: dict[str, Any] = commit["record"]
                return record
    raise LookupError(f"no {collection} record in the golden file")


def syntax_lines(name: str, kind: str) -> list[str]:
    """Values of an interop syntax file: '#' lines are comments except the rkey '#extra'; no strip."""
    text = (SYNTAX / f"{name}_syntax_{kind}.txt").read_text(encoding="utf-8")
    return [
        line
        for line in text.split("\n")
        if line and (not line.startswith("#") or (name == "recordkey" and line == "#extra"))
    ]


def write_replay(path: Path, frames: Iterable[bytes]) -> Path:
    buffer = io.BytesIO()
    for frame in frames:
        write_frame(buffer, frame)
    path.write_bytes(buffer.getvalue())
    return path


def replay_past(path: Path, state: Path, *, gap: int, frames: int) -> Path:
    """A replay whose first frame lies ``gap`` seqs past the stored cursor (a gap in coverage),
    then ``frames`` posts by a study user of the bundled sample."""
    with sqlite3.connect(state) as db:
        (cursor,) = db.execute("SELECT value FROM meta WHERE key = 'cursor'").fetchone()
    db.close()
    first = int(cursor) + gap + 1
    repo = "did:plc:53iucmf5ldftgqyf2ac7hmhd"
    posts = (OpSpec("create", f"app.bsky.feed.post/3later{n}", post(f"later {n}")) for n in range(frames))
    return write_replay(path, (commit(first + n, repo, op) for n, op in enumerate(posts)))


def write_users(path: Path, dids: Iterable[str]) -> Path:
    path.write_text("".join(f"{did}\n" for did in dids), encoding="utf-8")
    return path


def commit(seq: int, repo: str, *ops: OpSpec, rev: str = "3mptbypluud2a") -> bytes:
    return encode_commit_frame(seq=seq, repo=repo, rev=rev, time=TIME, ops=ops)


def post(text: str = "hello", parent: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text, "createdAt": TIME}
    if parent is not None:
        record["reply"] = {
            "parent": {"uri": parent, "cid": "bafyreiftot7eltsc3f6g4qktykmbv6jcmdmhcx5osscan6jpdxkpqcmcza"},
            "root": {"uri": parent, "cid": "bafyreiftot7eltsc3f6g4qktykmbv6jcmdmhcx5osscan6jpdxkpqcmcza"},
        }
    return record


def like(subject_uri: str) -> dict[str, Any]:
    return {
        "$type": "app.bsky.feed.like",
        "subject": {"uri": subject_uri, "cid": "bafyreiftot7eltsc3f6g4qktykmbv6jcmdmhcx5osscan6jpdxkpqcmcza"},
        "createdAt": TIME,
    }


def record_cid(record: dict[str, Any]) -> str:
    """The CID the test encoder gives a record (CIDv1, dag-cbor, sha2-256)."""
    return str(libipld.encode_cid(cid_for(libipld.encode_dag_cbor(record))))


def repost(subject_uri: str) -> dict[str, Any]:
    return {**like(subject_uri), "$type": "app.bsky.feed.repost"}


def quote(text: str, quoted_uri: str, *, media: bool = False) -> dict[str, Any]:
    """A post that quotes ``quoted_uri``: an ``app.bsky.embed.record``, or with ``media`` the
    record inside an ``app.bsky.embed.recordWithMedia``."""
    record: dict[str, Any] = {
        "$type": "app.bsky.embed.record",
        "record": {"uri": quoted_uri, "cid": "bafyreiftot7eltsc3f6g4qktykmbv6jcmdmhcx5osscan6jpdxkpqcmcza"},
    }
    if media:
        record = {
            "$type": "app.bsky.embed.recordWithMedia",
            "record": record,
            "media": {"$type": "app.bsky.embed.images", "images": []},
        }
    return {**post(text), "embed": record}


def follow(subject: object) -> dict[str, Any]:
    return {"$type": "app.bsky.graph.follow", "subject": subject, "createdAt": TIME}


def tree(root: Path) -> set[str]:
    """Every visible file under ``root``, relative, as posix paths."""
    return {
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
    }


def all_files(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


def from_json_model(value: Any) -> Any:
    """The inverse of the JSON data model: ``$link`` -> CID bytes, ``$bytes`` -> bytes."""
    if isinstance(value, dict):
        if set(value) == {"$link"}:
            return libipld.decode_multibase(value["$link"])[1]
        if set(value) == {"$bytes"}:
            text = value["$bytes"]
            return base64.b64decode(text + "=" * (-len(text) % 4))
        return {key: from_json_model(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json_model(item) for item in value]
    return value


def export_options(root: Path, *, state: str = "s.sqlite", **overrides: Any) -> ExportOptions:
    """The export's options for the cache, state and output under ``root``."""
    return ExportOptions(
        cache_dir=str(root / "cache"), state=str(root / state), out=str(root / "out"), **overrides
    )


def run_syncstream(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m syncstream ARGV`` run in ``cwd``, its output captured; a failure is returned,
    not raised (its exit status is what a test checks)."""
    return subprocess.run(
        [sys.executable, "-m", "syncstream", *argv],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )


def store_paths(root: Path) -> list[str]:
    """The cache and state options of the store under ``root``, nothing else."""
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite")]


def sample_with_a_gap(root: Path) -> None:
    """The bundled sample written under ``root``, then a replay that starts 40 seqs past its
    cursor (a recorded gap), and both exported to ``root/out``."""
    assert run_syncstream("write", "-q", *store_paths(root), cwd=root).returncode == 0
    later = replay_past(root / "later.bin", root / "s.sqlite", gap=40, frames=5)
    assert run_syncstream("write", "-q", *store_paths(root), "--replay", str(later), cwd=root).returncode == 0
    exported = run_syncstream("export", "-q", *store_paths(root), "--out", str(root / "out"), cwd=root)
    assert exported.returncode == 0, exported.stderr


def store_args(root: Path) -> list[str]:
    """The write command's cache and state options under ``root``, quiet, without os.sync."""
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite"), "-q", "--no-sync"]


def dataset_rows(out: Path, name: str) -> list[dict[str, Any]]:
    """Every row of one exported dataset (``service/record_type``) under ``out``, as dicts;
    none when it was never written."""
    import pyarrow.dataset as pads  # (only the tests that read output need it)

    directory = out / name
    if not directory.exists():
        return []
    table = pads.dataset(directory, format="parquet", partitioning="hive").to_table(use_threads=False)
    return list(table.to_pylist())


def write_args(
    root: Path, frames: list[bytes], study: list[str], in_network: Sequence[str] = ()
) -> list[str]:
    """The write command's arguments to replay ``frames`` for a population, under ``root``."""
    args = ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite"), "-q", "--no-sync"]
    args += ["--replay", str(write_replay(root / "replay.bin", frames))]
    args += ["--study-users", str(write_users(root / "study.txt", study))]
    return [*args, "--in-network-users", str(write_users(root / "in_network.txt", in_network))]


def export_args(root: Path, *extra: str) -> list[str]:
    """The export command's arguments for the store ``write_args`` made, out to ``root/out``."""
    return ["--cache-dir", str(root / "cache"), "--state", str(root / "s.sqlite"), "-q",
            "--out", str(root / "out"), *extra]  # fmt: skip


def exported(root: Path) -> list[tuple[str, ...]]:
    """Every exported row's (record_type, uri, operation, author_did, rkey), read by DuckDB."""
    import duckdb  # (only the tests that read output need it)

    with duckdb.connect() as db:
        return sorted(
            db.execute(
                f"SELECT record_type, uri, operation, author_did, rkey FROM read_parquet("
                f"'{root / 'out'}/*/*/*/*.parquet', hive_partitioning = true, union_by_name = true)"
            ).fetchall()
        )


def free_port() -> int:
    """A loopback port nothing listens on now (for a command that must be told its port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def get(url: str) -> tuple[int, str]:
    """An HTTP GET's status and text, an error status included (OSError when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for(check: Callable[[], object], what: str = "the condition", timeout: float = 60.0) -> None:
    """Until ``check()`` holds, polled every 20 ms: the test waits on the event itself, and the
    timeout only guards against a hang (it is not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


class ManualClock:
    """A ``syncstream.clock.Clock`` that only moves when waited on: a wait that no event ends
    passes its whole time at once, and ``waited`` keeps each wait's seconds."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.waited: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def wait(self, event: StopRequest, seconds: float) -> bool:
        if event.is_set():
            return True
        self.waited.append(seconds)
        self.now += seconds
        return False
