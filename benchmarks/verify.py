"""The verified stream's cost: ``python -m benchmarks.verify [--frames N] [--rounds N]``.

The corpus's 150 real frames, repeated to ``--frames``, written by one ``CacheWriter`` (inline
writes, no syncfs, tmpfs) with ``--verify none``, ``study`` and ``population``, for two
populations: the bundled sample (a handful of study users and their in-network accounts, as
in a real study) and every account that commits in the corpus as study users (nearly every
frame verified and written). The PLC directory is a loopback one serving the corpus's real DID
documents, in a process of its own; keys are cached, so it is asked once per author. A
repeated frame carries the same ``rev``, which the verified stream refuses as stale: the last
revs are forgotten at each pass over the corpus, so that every pass verifies and writes the
same as the first. Prints the median seconds and the ratio to ``none``.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.inputs import CORPUS, corpus_dids, corpus_frames
from syncstream.verify import DidDocuments
from syncstream.write.authentic import StreamVerifier
from syncstream.write.context import setup_cache_write_system
from syncstream.write.writer import CacheWriter

ROOT = Path(__file__).resolve().parent.parent
_SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


def _users(name: str) -> list[str]:
    lines = (ROOT / "syncstream" / "data" / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def once(
    frames: list[bytes], study: list[str], in_network: list[str], scope: str, plc: str
) -> tuple[float, dict[str, int], int]:
    with tempfile.TemporaryDirectory(dir=_SCRATCH) as tmp:
        root = Path(tmp)
        (root / "s.txt").write_text("\n".join(study) + "\n")
        (root / "n.txt").write_text("\n".join(in_network) + "\n")
        with setup_cache_write_system(root / "cache", root / "s.sqlite", study_users=root / "s.txt",
                                      in_network_users=root / "n.txt") as context:  # fmt: skip
            verifier = None if scope == "none" else StreamVerifier(DidDocuments(plc), scope)
            writer = CacheWriter(context, durable=False, verifier=verifier)
            corpus = len(corpus_frames())
            started = time.perf_counter()
            for index, frame in enumerate(frames):
                if verifier is not None and index % corpus == 0:
                    writer.chains.forget()  # a fresh pass: the same revs are new again
                writer.process_frame(frame)
            writer.flush()
            seconds = time.perf_counter() - started
    counts = dict(verifier.counts) if verifier is not None else {}
    return seconds, counts, len(verifier.documents) if verifier is not None else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.verify", description=__doc__)
    parser.add_argument("--frames", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from benchmarks.inputs import long_replay  # noqa: PLC0415
    from syncstream.firehose.replay import iter_replay  # noqa: PLC0415

    with tempfile.TemporaryDirectory(dir=_SCRATCH) as tmp:
        frames = list(iter_replay(long_replay(Path(tmp) / "r.bin", args.frames)))
    command = [sys.executable, "-m", "syncstream.servers.pds", "--documents",
               str(CORPUS / "did_docs.json.zst")]  # fmt: skip
    populations = {
        "sample study": (_users("sample_study_users.txt"), _users("sample_in_network_users.txt")),
        "all writers": (corpus_dids(), []),
    }
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as pds:
        try:
            assert pds.stdout is not None
            plc = pds.stdout.readline().rsplit(" at ", 1)[1].strip()
            for label, (study, in_network) in populations.items():
                medians = {}
                for scope in ("none", "study", "population"):
                    runs = [once(frames, study, in_network, scope, plc) for _ in range(args.rounds)]
                    medians[scope] = statistics.median(r[0] for r in runs)
                    counts, keys = runs[-1][1], runs[-1][2]
                    ratio = medians[scope] / medians["none"]
                    print(
                        f"{label:<13} --verify {scope:<10} {medians[scope]:.3f}s ({args.frames / medians[scope]:,.0f} "
                        f"frames/s), {ratio:.2f}x none; keys cached {keys}; {counts}",
                        flush=True,
                    )
        finally:
            pds.send_signal(signal.SIGTERM)
            pds.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
