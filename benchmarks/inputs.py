"""Benchmark inputs built from the real corpus: a long replay and a large cache."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from syncstream.firehose.decode import Commit, RepoOp, decode_frame
from syncstream.firehose.encode import with_seq
from syncstream.firehose.replay import iter_replay, write_frame
from syncstream.write.context import setup_cache_write_system
from syncstream.write.writer import CacheWriter

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("SYNCSTREAM_FIXTURES", ROOT.parent / "shared" / "fixtures")) / "jetstream-corpus"
SAMPLE = ROOT / "syncstream" / "data" / "sample_frames.bin.zst"


def corpus_frames() -> list[bytes]:
    source = CORPUS / "frames.bin.zst"
    return list(iter_replay(source if source.exists() else SAMPLE))


def corpus_dids() -> list[str]:
    """Every account that committed in the window: a heavy study population (most ops write)."""
    return sorted({d.commit.repo for d in map(decode_frame, corpus_frames()) if d.commit is not None})


def long_replay(path: Path, frames: int) -> Path:
    """The corpus frames repeated with fresh, increasing seq numbers."""
    corpus = corpus_frames()
    first = 40_000_000_000
    buffer = io.BytesIO()
    for i in range(frames):
        write_frame(buffer, with_seq(corpus[i % len(corpus)], first + i))
    path.write_bytes(buffer.getvalue())
    return path


def _renamed_commits(records: int) -> Iterator[Commit]:
    """Real corpus commits, their ops renamed (rkey + counter) so every record is distinct."""
    commits = [d.commit for d in map(decode_frame, corpus_frames()) if d.commit is not None]
    made = n = 0
    while made < records:
        for commit in commits:
            ops = tuple(
                RepoOp(op.action, op.collection, f"{op.rkey}{n:x}", op.cid, op.record) for op in commit.ops
            )
            n += 1
            made += len(ops)
            yield Commit(commit.seq, commit.repo, commit.rev, commit.time, ops)
            if made >= records:
                return


def build_cache(directory: Path, records: int, study: list[str]) -> int:
    """A cache written by syncstream itself from real records; returns how many files it holds."""
    with tempfile.TemporaryDirectory() as tmp:
        users = Path(tmp) / "study.txt"
        users.write_text("\n".join(study) + "\n")
        with setup_cache_write_system(directory, Path(tmp) / "state.sqlite", study_users=users) as context:
            writer = CacheWriter(context, durable=False)
            for commit in _renamed_commits(records):
                writer.apply_commit(commit)
    os.unlink(directory / ".writer.lock")
    return sum(len(files) for _, _, files in os.walk(directory))


def build_large_cache(directory: Path, records: int, size: int) -> int:
    """A cache of ``records`` posts by one study user, each with a text of ``size`` bytes."""
    study = "did:plc:studystudystudystudystu"
    with tempfile.TemporaryDirectory() as tmp:
        users = Path(tmp) / "study.txt"
        users.write_text(study + "\n")
        with setup_cache_write_system(directory, Path(tmp) / "state.sqlite", study_users=users) as context:
            writer = CacheWriter(context, durable=False)
            for i in range(records):
                record = {"$type": "app.bsky.feed.post", "text": f"{i:08d}" * (size // 8), "createdAt": _TIME}
                op = RepoOp("create", "app.bsky.feed.post", f"big{i}", _CID, record)
                writer.apply_commit(Commit(i + 1, study, "3l", _TIME, (op,)))
    os.unlink(directory / ".writer.lock")
    return records


_TIME = "2026-07-04T14:38:07.517Z"
_CID = "bafyreiftot7eltsc3f6g4qktykmbv6jcmdmhcx5osscan6jpdxkpqcmcza"


def copy_tree(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
