"""``python -m benchmarks``: syncstream side by side with the seed's path and the physical floor.

Each comparison alternates A and B over several rounds in this process tree, on identical fresh
inputs, and reports median times, peak RSS (of each command, summed over its process tree:
helper processes count) and the median of the per-round ratios; the figures are also saved as
JSON. Targets (issue "Benchmarks"):

- ingest: syncstream's whole write process at least 3x faster than the seed's path;
- decode + route at least 0.7x the speed of a bare libipld decode of the same frames;
- cache writes at least 0.6x the rate of a bare open/write/close of the same payloads;
- export at most 1.25x the read-and-unlink floor, at most half the seed's peak memory, and its
  peak memory at 10x the cache size within 1.5x of the 1x figure;
- export of 400 records of 1 MiB each under 400 MiB peak memory, summed over its processes
  (chunks are bounded by bytes, ``--batch-bytes``, as well as by files).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import libipld

from benchmarks.inputs import (
    build_cache,
    build_large_cache,
    copy_tree,
    corpus_dids,
    corpus_frames,
    long_replay,
)
from syncstream.cache import write_atomic
from syncstream.firehose.decode import decode_frame
from syncstream.registry.builtin import HANDLERS
from syncstream.registry.population import Population
from syncstream.store import StateStore
from syncstream.write.route import route_commit, routing_table

HERE = Path(__file__).resolve().parent
PY = sys.executable


class Measure:
    """Seconds and peak RSS (MiB) of one child process."""

    def __init__(self, seconds: float, rss_mib: float) -> None:
        self.seconds, self.rss_mib = seconds, rss_mib


def run(command: Sequence[str]) -> Measure:
    """Run a command under ``benchmarks/launch.py``, a small process that forks it: a child's
    peak RSS counts what it inherited at fork, so it must be forked from something small."""
    with tempfile.TemporaryFile() as errors:
        result = subprocess.run(
            [PY, str(HERE / "launch.py"), *command], stdout=subprocess.PIPE, stderr=errors, check=False
        )
        if result.returncode != 0:
            errors.seek(0)
            raise RuntimeError(
                f"{command[:4]} failed ({result.returncode}): {errors.read().decode()[-2000:]}"
            )
    seconds, rss_kib = result.stdout.split()
    return Measure(float(seconds), int(rss_kib) / 1024)


def timed(function: Callable[[], object]) -> Measure:
    started = time.perf_counter()
    function()
    return Measure(time.perf_counter() - started, 0.0)


def median(values: list[float]) -> float:
    return statistics.median(values)


class Report:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def add(
        self,
        name: str,
        a_name: str,
        b_name: str,
        a: list[Measure],
        b: list[Measure],
        ratio: Callable[[Measure, Measure], float],
        ratio_label: str,
        target: str,
        ok: Callable[[float], bool],
    ) -> float:
        ratios = [ratio(x, y) for x, y in zip(a, b, strict=True)]
        ratio_median = median(ratios)
        row = {
            "a": a_name,
            "b": b_name,
            "a_seconds_median": median([m.seconds for m in a]),
            "b_seconds_median": median([m.seconds for m in b]),
            "a_rss_mib_max": max(m.rss_mib for m in a),
            "b_rss_mib_max": max(m.rss_mib for m in b),
            "ratio": ratio_label,
            "ratio_median": ratio_median,
            "ratios": ratios,
            "target": target,
            "met": ok(ratio_median),
        }
        self.rows[name] = row
        print(
            f"{name:<28} {a_name} {row['a_seconds_median']:.3f}s {row['a_rss_mib_max']:.0f}MiB | "
            f"{b_name} {row['b_seconds_median']:.3f}s {row['b_rss_mib_max']:.0f}MiB | "
            f"{ratio_label} = {ratio_median:.2f} (target {target}) {'OK' if row['met'] else 'MISSED'}",
            flush=True,
        )
        return ratio_median


def bench_ingest(work: Path, report: Report, frames: int, rounds: int) -> None:
    replay = long_replay(work / "replay.bin", frames)
    populations = {
        # every account that commits in the corpus: nearly every frame writes a file
        "all writers": corpus_dids(),
        # the bundled sample population: a handful of study users, as in a real study
        "sample study": [
            line.split("#")[0].strip()
            for line in (HERE.parent / "syncstream/data/sample_study_users.txt").read_text().splitlines()
            if line.split("#")[0].strip()
        ],
    }
    for label, dids in populations.items():
        _bench_ingest_population(work, report, replay, frames, rounds, label, dids)
    _bench_decode_route(report, frames, rounds)


def _bench_ingest_population(
    work: Path, report: Report, replay: Path, frames: int, rounds: int, label: str, dids: list[str]
) -> None:
    study = work / "study.txt"
    study.write_text("\n".join(dids) + "\n")
    ours, seed = [], []
    for i in range(rounds):
        a, b = work / f"ingest-a{i}", work / f"ingest-b{i}"
        ours.append(run([PY, "-m", "syncstream.write", "-q", "--replay", str(replay), "--cache-dir", str(a / "cache"),
                         "--state", str(a / "state.sqlite"), "--study-users", str(study)]))  # fmt: skip
        seed.append(run([PY, str(HERE / "seed_ingest.py"), str(replay), str(b / "cache"), str(study)]))
        shutil.rmtree(a)
        shutil.rmtree(b)
    report.add(
        f"ingest, {label} ({frames} frames)", "syncstream", "seed", ours, seed,
        lambda x, y: y.seconds / x.seconds, "speedup", ">= 3.0", lambda r: r >= 3.0,
    )  # fmt: skip


def _bench_decode_route(report: Report, frames: int, rounds: int) -> None:
    corpus = corpus_frames()
    batch = [corpus[i % len(corpus)] for i in range(frames)]
    population = Population(frozenset(corpus_dids()), frozenset())
    table = routing_table(HANDLERS)
    collections = table.names

    def decode_and_route() -> None:
        for frame in batch:
            decoded = decode_frame(frame, collections)
            if decoded.commit is not None:
                route_commit(table, decoded.commit, population, {}, "2026-01-01T00:00:00.000000Z")

    def bare_decode() -> None:
        for frame in batch:
            _, body = libipld.decode_dag_cbor_multi(frame)
            blocks = body.get("blocks")
            if blocks:
                libipld.decode_car(blocks)

    ours, floor = [], []
    for _ in range(rounds):
        ours.append(timed(decode_and_route))
        floor.append(timed(bare_decode))
    report.add(
        "decode+route vs bare decode", "syncstream", "libipld", ours, floor,
        lambda x, y: y.seconds / x.seconds, "relative speed", ">= 0.7", lambda r: r >= 0.7,
    )  # fmt: skip


def bench_cache_writes(work: Path, template: Path, report: Report, rounds: int) -> None:
    payloads = []
    for directory, _, files in os.walk(template):
        for name in files:
            if name.endswith(".json"):
                payloads.append((name, Path(directory, name).read_bytes()))
    ours, bare = [], []
    for i in range(rounds):
        a, b = work / f"writes-a{i}", work / f"writes-b{i}"
        a.mkdir()
        b.mkdir()

        def atomic(directory: str = str(a)) -> None:
            for name, payload in payloads:
                write_atomic(os.path.join(directory, name), payload)

        def plain(directory: str = str(b)) -> None:
            for name, payload in payloads:
                with open(os.path.join(directory, name), "wb") as handle:
                    handle.write(payload)

        ours.append(timed(atomic))
        bare.append(timed(plain))
        shutil.rmtree(a)
        shutil.rmtree(b)
    report.add(
        f"cache writes ({len(payloads)} files)", "atomic", "open/write/close", ours, bare,
        lambda x, y: y.seconds / x.seconds, "relative rate", ">= 0.6", lambda r: r >= 0.6,
    )  # fmt: skip


def export_once(work: Path, template: Path, tag: str) -> Measure:
    cache, out = work / f"{tag}-cache", work / f"{tag}-out"
    copy_tree(template, cache)
    StateStore(work / f"{tag}.sqlite").close()  # the writer's part: an export creates no store
    measure = run([PY, "-m", "syncstream.export", "-q", "--cache-dir", str(cache), "--state",
                   str(work / f"{tag}.sqlite"), "--out", str(out)])  # fmt: skip
    leftover = sum(len([f for f in files if f.endswith(".json")]) for _, _, files in os.walk(cache))
    if leftover:
        raise RuntimeError(f"the export left {leftover} cache files behind")
    shutil.rmtree(cache)
    shutil.rmtree(out)
    os.unlink(work / f"{tag}.sqlite")
    return measure


def bench_export(
    work: Path, template: Path, big: Path | None, report: Report, rounds: int, files: int
) -> None:
    ours, seed, floor = [], [], []
    for i in range(rounds):
        ours.append(export_once(work, template, f"export-a{i}"))
        cache = work / f"export-b{i}"
        copy_tree(template, cache)
        seed.append(run([PY, str(HERE / "seed_export.py"), str(cache), str(work / f"export-b{i}-out")]))
        shutil.rmtree(cache)
        shutil.rmtree(work / f"export-b{i}-out")
        copy_tree(template, cache)
        floor.append(run([PY, str(HERE / "floor_export.py"), str(cache)]))
        shutil.rmtree(cache)
    report.add(
        f"export ({files} files) vs floor", "syncstream", "read+unlink", ours, floor,
        lambda x, y: x.seconds / y.seconds, "time ratio", "<= 1.25", lambda r: r <= 1.25,
    )  # fmt: skip
    report.add(
        "export memory vs seed", "syncstream", "seed (pandas)", ours, seed,
        lambda x, y: x.rss_mib / y.rss_mib, "peak RSS ratio", "<= 0.5", lambda r: r <= 0.5,
    )  # fmt: skip
    if big is not None:
        large = [export_once(work, big, f"export-big{i}") for i in range(max(1, rounds // 2))]
        report.add(
            "export memory at 10x", "10x cache", "1x cache", large, ours[: len(large)],
            lambda x, y: x.rss_mib / y.rss_mib, "peak RSS ratio", "<= 1.5", lambda r: r <= 1.5,
        )  # fmt: skip


def bench_large_records(work: Path, report: Report, rounds: int) -> None:
    """Peak memory of exporting 400 records of 1 MiB, against a budget of 400 MiB."""
    template = work / "template-large-records"
    build_large_cache(template, 400, 1 << 20)
    ours = [export_once(work, template, f"export-large{i}") for i in range(max(1, rounds // 2))]
    budget = [Measure(0.0, 400.0) for _ in ours]
    report.add(
        "export 400 x 1 MiB records", "syncstream", "budget", ours, budget,
        lambda x, y: x.rss_mib / y.rss_mib, "peak RSS / 400 MiB", "< 1", lambda r: r < 1,
    )  # fmt: skip
    shutil.rmtree(template)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--rounds", type=int, default=5, help="A/B rounds per comparison (default: %(default)s)"
    )
    parser.add_argument("--frames", type=int, default=30_000, help="frames for ingest (default: %(default)s)")
    parser.add_argument(
        "--records", type=int, default=30_000, help="records in the export cache (default: %(default)s)"
    )
    parser.add_argument(
        "--scale", type=int, default=10, help="the large cache is this many times bigger (0: skip)"
    )
    parser.add_argument(
        "--only", choices=["ingest", "writes", "export", "large"], action="append", help="run only these"
    )
    parser.add_argument(
        "--json", default=str(HERE / "results" / "latest.json"), help="where to save the figures"
    )
    parser.add_argument(
        "--dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where inputs and caches live (default: %(default)s, memory-backed, so that the figures "
        "measure the software and not a shared disk's noise; give a disk path to include the disk)",
    )
    args = parser.parse_args(argv)
    only = set(args.only or ["ingest", "writes", "export", "large"])
    # Children start from compiled bytecode, as an installed package does (this machine sets
    # PYTHONDONTWRITEBYTECODE, which would make every run compile syncstream anew).
    compileall.compile_dir(str(HERE.parent / "syncstream"), quiet=1)
    compileall.compile_dir(str(HERE), quiet=1)
    report = Report()
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; {args.rounds} rounds",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="syncstream-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        dids = corpus_dids()
        template = work / "template"
        files = build_cache(template, args.records, dids) if only & {"writes", "export"} else 0
        big = None
        if "export" in only and args.scale > 1:
            big = work / "template-big"
            build_cache(big, args.records * args.scale, dids)
        if "ingest" in only:
            bench_ingest(work, report, args.frames, args.rounds)
        if "writes" in only:
            bench_cache_writes(work, template, report, args.rounds)
        if "export" in only:
            bench_export(work, template, big, report, args.rounds, files)
        if "large" in only:
            bench_large_records(work, report, args.rounds)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                           "args": vars(args), "results": report.rows}, indent=2))  # fmt: skip
    print(f"figures saved to {args.json}")
    return 0 if all(row["met"] for row in report.rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
