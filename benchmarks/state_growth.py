"""The state store's growth per cached record: ``python -m benchmarks.state_growth [--records N]``.

Writes N in-network posts, then N likes on a study user's post (each by another account),
through the writer, and prints the state file's growth per record after each (after a WAL
checkpoint, in whole pages) and the index rows each kind added.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from syncstream.firehose.encode import OpSpec, encode_commit_frame
from syncstream.write.context import setup_cache_write_system
from syncstream.write.writer import CacheWriter

STUDY, FRIEND = "did:plc:studystudystudystudystu", "did:plc:friendfriendfriendfriendf"
TIME = "2026-07-04T14:38:07.517Z"


def _size(path: Path) -> tuple[int, int]:
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (rows,) = db.execute("SELECT count(*) FROM cached_uris").fetchone()
    return path.stat().st_size, rows


def measure(records: int) -> dict[str, tuple[float, float]]:
    """Kind -> (state bytes per record, index rows per record)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "study.txt").write_text(STUDY + "\n")
        (root / "net.txt").write_text(FRIEND + "\n")
        state = root / "state.sqlite"
        with setup_cache_write_system(
            root / "cache", state, study_users=root / "study.txt", in_network_users=root / "net.txt"
        ) as context:
            writer = CacheWriter(context, durable=False, flush_frames=1000)
            found: dict[str, tuple[float, float]] = {}
            post = {"$type": "app.bsky.feed.post", "text": "hello", "createdAt": TIME}
            like_of = f"at://{STUDY}/app.bsky.feed.post/3kstudypost22"
            kinds: dict[str, Callable[[int], tuple[str, OpSpec]]] = {
                "in-network post": lambda i: (FRIEND, OpSpec("create", f"app.bsky.feed.post/3k{i:011d}", post)),
                "like on a study post": lambda i: (
                    f"did:plc:liker{i:019d}",
                    OpSpec("create", f"app.bsky.feed.like/3k{i:011d}", {
                        "$type": "app.bsky.feed.like", "subject": {"uri": like_of, "cid": "bafyreia"}, "createdAt": TIME,
                    }),
                ),
            }  # fmt: skip
            seq = 1
            writer.flush()
            for kind, make in kinds.items():
                before, rows_before = _size(state)
                for i in range(records):
                    repo, op = make(i)
                    writer.process_frame(
                        encode_commit_frame(seq=seq, repo=repo, rev="3mptbypluud2a", time=TIME, ops=[op])
                    )
                    seq += 1
                writer.flush()
                after, rows_after = _size(state)
                found[kind] = ((after - before) / records, (rows_after - rows_before) / records)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.state_growth", description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    for kind, (size, rows) in measure(args.records).items():
        print(
            f"{kind}: {size:.1f} state bytes and {rows:.2f} index rows per record ({args.records:,} records)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
