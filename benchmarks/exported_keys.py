"""What exactly-once without a window costs, two ways:
``python -m benchmarks.exported_keys [--keys N] [--batch M]``.

- **Keys kept** (what syncstream does): the state keeps the exported keys of the population's
  own records for the study's life. Measured: the state's bytes per kept key (after a WAL
  checkpoint), and the time an export run's deduplication of a batch of M new keys takes
  (``Exports.exported_among``) beside N kept keys, against an empty store.
- **Merge by key**: no keys kept; each export run's rows are checked against the table itself
  (the table's ``uri`` and ``cid`` read and the batch's keys looked up in them, what a Delta
  MERGE on the key has to do at least). Measured: that time for a table of N rows.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from syncstream.store import StateStore, export_key

DATASET = "study_user_activity/post"


def _key(i: int) -> tuple[str, str, str, str, str]:
    did = f"did:plc:{i % 500:024d}"  # 500 study users
    return export_key(
        DATASET, f"at://{did}/app.bsky.feed.post/3m{i:011d}", "create", None, f"bafyrei{i:052d}"
    )


def keys_kept(count: int, batch: int) -> tuple[float, float, float]:
    """(state bytes per kept key, seconds to deduplicate a batch beside them, the same beside none)."""
    with tempfile.TemporaryDirectory() as tmp:
        empty, full = Path(tmp) / "empty.sqlite", Path(tmp) / "full.sqlite"
        StateStore(empty).close()
        with StateStore(full) as state:
            base = full.stat().st_size
            step = 100_000
            for start in range(0, count, step):
                state.exports.commit(
                    f"c{start}", [_key(i) for i in range(start, min(count, start + step))], 1.0
                )
        with closing(sqlite3.connect(full)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        per_key = (full.stat().st_size - base) / count
        fresh = [_key(count + i) for i in range(batch)]
        timings = []
        for path in (full, empty):
            with StateStore(path) as state:
                started = time.perf_counter()
                state.exports.exported_among(fresh)
                timings.append(time.perf_counter() - started)
    return per_key, timings[0], timings[1]


def merge_by_key(count: int, batch: int) -> float:
    """Seconds to check a batch of keys against a Delta table of ``count`` rows."""
    with tempfile.TemporaryDirectory() as tmp:
        keys = [_key(i) for i in range(count)]
        table = pa.table(
            {
                "uri": [k[1] for k in keys],
                "cid": [k[4] for k in keys],
                "partition_date": ["2026-12-01"] * count,
            }
        )
        write_deltalake(f"{tmp}/t", table, partition_by=["partition_date"])
        fresh = pa.array([f"{k[1]} {k[4]}" for k in (_key(count + i) for i in range(batch))])
        started = time.perf_counter()
        data = DeltaTable(f"{tmp}/t").to_pyarrow_dataset().to_table(columns=["uri", "cid"])
        present = pc.binary_join_element_wise(data.column("uri"), data.column("cid"), " ")
        pc.is_in(fresh, value_set=present)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.exported_keys", description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000, help="kept keys, or table rows")
    parser.add_argument("--batch", type=int, default=10_000, help="keys an export run deduplicates")
    args = parser.parse_args()
    per_key, beside, alone = keys_kept(args.keys, args.batch)
    print(f"keys kept: {per_key:.0f} state bytes per key; a batch of {args.batch} deduplicated in "
          f"{beside * 1000:.1f} ms beside {args.keys} keys ({alone * 1000:.1f} ms beside none)")  # fmt: skip
    seconds = merge_by_key(args.keys, args.batch)
    print(f"merge by key: a batch of {args.batch} checked against a table of {args.keys} rows in "
          f"{seconds * 1000:.0f} ms per export run")  # fmt: skip


if __name__ == "__main__":
    main()
