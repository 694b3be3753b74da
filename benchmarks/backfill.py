"""Backfill throughput: ``python -m benchmarks.backfill [--repos N] [--records N] [--latency S]``,
and memory: ``python -m benchmarks.backfill --sizes 10000,100000,1000000``.

Builds N repositories (posts and likes, each a CAR with a signed-commit root and an MST), serves
them from the loopback PDS with ``slow`` standing in for network latency, and backfills them all
into a fresh cache at ``--concurrency`` 1, 4 and 16; prints repositories and records per second.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.__main__ import run
from benchmarks.repos import build_repo, write_repo
from syncstream.backfill.fetch import Fetcher
from syncstream.servers.keys import REHEARSAL_SEED
from syncstream.store import StateStore
from syncstream.verify import DidDocuments
from syncstream.write.backfill import backfill_dids
from syncstream.write.context import setup_cache_write_system
from syncstream.write.writer import CacheWriter

TIME = "2026-07-04T14:38:07.517Z"
# tmpfs where there is one: this machine's shared disk costs 40-570 us per file create, which
# would measure the disk, not the backfill (as benchmarks/__main__ does)
_SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


def measure(repos: int, records: int, latency: float, concurrency: int) -> tuple[float, int]:
    """Seconds to backfill ``repos`` repositories of ``records`` records, and the records read.
    The loopback PDS runs as a process of its own, as a real PDS is not in the backfill's."""
    dids = [f"did:plc:bench{i:019d}" for i in range(repos)]
    with tempfile.TemporaryDirectory(dir=_SCRATCH) as tmp:
        root = Path(tmp)
        command = [sys.executable, "-m", "syncstream.servers.pds", "--key-seed", str(REHEARSAL_SEED)]
        for did in dids:
            car = root / f"{did.rsplit(':', 1)[1]}.car"
            car.write_bytes(build_repo(did, records))
            command += ["--repo", str(car), "--fault", f"{did}:slow:{latency}"]
        (root / "study.txt").write_text("\n".join(dids) + "\n")
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as pds:
            try:
                assert pds.stdout is not None
                url = pds.stdout.readline().rsplit(" at ", 1)[1].strip()
                with setup_cache_write_system(
                    root / "cache", root / "s.sqlite", study_users=root / "study.txt"
                ) as context:
                    started = time.perf_counter()
                    writer = CacheWriter(context, durable=False)
                    fetcher = Fetcher(DidDocuments(url), endpoints="any")
                    results = backfill_dids(writer, dids, fetcher, concurrency=concurrency)
                    seconds = time.perf_counter() - started
            finally:
                pds.send_signal(signal.SIGTERM)
                pds.wait(timeout=10)
    assert all(r.reason is None for r in results), [r.reason for r in results if r.reason]
    return seconds, sum(r.records for r in results)


def measure_size(records: int, scratch: str | None) -> tuple[float, float, int]:
    """``python -m syncstream.backfill`` of one repository of ``records`` records, run under
    ``benchmarks/launch.py``: seconds (the command's start-up included), peak RSS in MiB of the
    command, and the CAR's size. The loopback PDS is a process of its own, not measured."""
    did = "did:plc:benchbenchbenchbenchbenc"
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        root = Path(tmp)
        size = write_repo(root / "repo.car", did, records)
        (root / "study.txt").write_text(did + "\n")
        StateStore(root / "s.sqlite").close()  # the writer's part: a backfill creates no store
        command = [sys.executable, "-m", "syncstream.servers.pds", "--key-seed", str(REHEARSAL_SEED), "--repo",
                   str(root / "repo.car")]  # fmt: skip
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as pds:
            try:
                assert pds.stdout is not None
                url = pds.stdout.readline().rsplit(" at ", 1)[1].strip()
                measured = run([sys.executable, "-m", "syncstream.backfill", "--cache-dir", str(root / "cache"),
                                "--state", str(root / "s.sqlite"), "--study-users", str(root / "study.txt"),
                                "--plc-url", url, "--scratch-dir", tmp, "-q"])  # fmt: skip
            finally:
                pds.send_signal(signal.SIGTERM)
                pds.wait(timeout=60)
        print(  # before the clean-up, which for a million files on disk takes long
            f"{records:>9,} records ({size / 2**20:,.0f} MiB CAR): {measured.seconds:.1f}s, "
            f"{records / measured.seconds:,.0f} records/s, peak RSS {measured.rss_mib:,.0f} MiB",
            flush=True,
        )
    return measured.seconds, measured.rss_mib, size


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backfill", description=__doc__)
    parser.add_argument("--repos", type=int, default=32)
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.2, help="the loopback PDS's delay per getRepo")
    parser.add_argument(
        "--sizes", help="instead: one repository of each of these sizes (e.g. 10000,100000,1000000): "
        "records/s and peak RSS of the backfill command",
    )  # fmt: skip
    parser.add_argument("--scratch", default=_SCRATCH, help="where the cache and the CAR go (default: tmpfs)")
    args = parser.parse_args()
    if args.sizes:
        for records in (int(n) for n in args.sizes.split(",")):
            measure_size(records, args.scratch)
        return 0
    for concurrency in (1, 4, 16):
        seconds, records = measure(args.repos, args.records, args.latency, concurrency)
        print(
            f"concurrency {concurrency:2d}: {args.repos} repositories, {records:,} records in {seconds:.2f}s: "
            f"{args.repos / seconds:.1f} repositories/s, {records / seconds:,.0f} records/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
