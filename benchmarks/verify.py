"""The verified stream's cost: ``python -m benchmarks.verify [--frames N] [--rounds N]``.

Three measures, side by side, each printed with its ratio:

1. The stream:
The corpus's 150 real frames, repeated to ``--frames``, written by one ``CacheWriter`` (inline
writes, no syncfs, tmpfs) with ``--verify none``, ``study`` and ``population``, for two
populations: the bundled sample (a handful of study users and their in-network accounts, as
in a real study) and every account that commits in the corpus as study users (nearly every
frame verified and written). The PLC directory is a loopback one serving the corpus's real DID
documents, in a process of its own; keys are cached, so it is asked once per author. A
repeated frame carries the same ``rev``, which the verified stream refuses as stale: the last
revs are forgotten at each pass over the corpus, so that every pass verifies and writes the
same as the first (the chains are forgotten, here and in the store). Prints the median
seconds and the ratio to ``none``.

2. The proof alone (``syncstream.firehose.proof.prove``: blocks hashed, ops at their paths,
the inversion to prevData) over the corpus's 148 commits: the median microseconds per commit.

3. One signature check (secp256k1, the corpus's keys and commits): libsecp256k1
(``coincurve``, what ``syncstream.verify`` uses) against OpenSSL (``cryptography``, what it used
before), the median microseconds per verify.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import libipld
import zstandard
from atproto_core.did_doc import DidDocument
from atproto_crypto.algs import ALGORITHM_TO_CLASS
from atproto_crypto.did import parse_did_key
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

from benchmarks.inputs import CORPUS, corpus_dids, corpus_frames
from syncstream.firehose.decode import decode_frame
from syncstream.firehose.proof import prove
from syncstream.verify import DidDocuments, verify_signature
from syncstream.write.authentic import StreamVerifier
from syncstream.write.context import setup_cache_write_system
from syncstream.write.writer import CacheWriter

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
_SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


def _users(name: str) -> list[str]:
    lines = (ROOT / "syncstream" / "data" / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def once(
    frames: list[bytes], study: list[str], in_network: list[str], scope: str, plc: str
) -> tuple[float, float, dict[str, int], int]:
    """One run: its wall seconds, this process's CPU seconds (less sensitive to the other
    processes of a shared machine), the verification counts and the keys cached."""
    with tempfile.TemporaryDirectory(dir=_SCRATCH) as tmp:
        root = Path(tmp)
        (root / "s.txt").write_text("\n".join(study) + "\n")
        (root / "n.txt").write_text("\n".join(in_network) + "\n")
        with setup_cache_write_system(root / "cache", root / "s.sqlite", study_users=root / "s.txt",
                                      in_network_users=root / "n.txt") as context:  # fmt: skip
            verifier = None if scope == "none" else StreamVerifier(DidDocuments(plc), scope)
            writer = CacheWriter(context, durable=False, verifier=verifier)
            corpus = len(corpus_frames())
            started, cpu = time.perf_counter(), time.process_time()
            untimed = untimed_cpu = 0.0
            for index, frame in enumerate(frames):
                if verifier is not None and index % corpus == 0:
                    forgetting, forgetting_cpu = time.perf_counter(), time.process_time()
                    writer.chains.forget()  # a fresh pass: the same revs are new again (not timed)
                    untimed += time.perf_counter() - forgetting
                    untimed_cpu += time.process_time() - forgetting_cpu
                writer.process_frame(frame)
            writer.flush()
            seconds = time.perf_counter() - started - untimed
            cpu_seconds = time.process_time() - cpu - untimed_cpu
    counts = dict(verifier.counts) if verifier is not None else {}
    return seconds, cpu_seconds, counts, len(verifier.documents) if verifier is not None else 0


def _median_us(work: Sequence[T], call: Callable[[T], object], repeat: int) -> float:
    """The median over ``work`` of each item's best time of ``repeat`` calls, in microseconds
    (the best of several: the machine is shared)."""
    times = []
    for item in work:
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            call(item)
            best = min(best, time.perf_counter() - started)
        times.append(best)
    return statistics.median(times) * 1e6


def proof_and_signatures(repeat: int = 20) -> None:
    decoded = [d for d in map(decode_frame, corpus_frames()) if d.commit is not None]
    proof = _median_us(decoded, lambda d: prove(d, d.commit.repo, d.commit.rev) if d.commit else None, repeat)
    print(f"proof alone     median {proof:.0f} us per commit over {len(decoded)} commits", flush=True)
    docs = json.loads(
        zstandard.ZstdDecompressor().stream_reader((CORPUS / "did_docs.json.zst").read_bytes()).read()
    )
    checks: list[tuple[str, bytes, bytes, Any]] = []
    for item in decoded:
        assert item.commit is not None
        commit = prove(item, item.commit.repo, item.commit.rev).commit
        key = DidDocument.from_dict(docs[item.commit.repo]).get_did_key()
        if key is None or not key.startswith("did:key:zQ3s"):  # secp256k1 keys only
            continue
        unsigned = libipld.encode_dag_cbor({k: v for k, v in commit.items() if k != "sig"})
        parsed = parse_did_key(key)
        openssl = ALGORITHM_TO_CLASS[parsed.jwt_alg]().get_elliptic_curve_public_key(parsed.key_bytes)
        checks.append((key, unsigned, commit["sig"], openssl))
    ours = _median_us(checks, lambda c: verify_signature(c[0], c[1], c[2]), repeat)

    def with_openssl(check: tuple[str, bytes, bytes, Any]) -> None:
        _, message, sig, public = check
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            public.verify(der, message, ECDSA(SHA256()))
        except InvalidSignature:
            raise AssertionError("a corpus signature does not verify") from None

    openssl = _median_us(checks, with_openssl, repeat)
    print(f"secp256k1 verify: coincurve {ours:.0f} us, cryptography {openssl:.0f} us "
          f"({openssl / ours:.1f}x faster), {len(checks)} commits", flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.verify", description=__doc__)
    parser.add_argument("--frames", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    proof_and_signatures()
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
            scopes = ("none", "study", "population")
            for label, (study, in_network) in populations.items():
                runs: dict[str, list[tuple[float, float, dict[str, int], int]]] = {
                    scope: [] for scope in scopes
                }
                for _ in range(args.rounds):  # the scopes in turn, round after round: drift hits each alike
                    for scope in scopes:
                        runs[scope].append(once(frames, study, in_network, scope, plc))
                wall = {scope: statistics.median(r[0] for r in runs[scope]) for scope in scopes}
                cpu = {scope: statistics.median(r[1] for r in runs[scope]) for scope in scopes}
                for scope in scopes:
                    counts, keys = runs[scope][-1][2], runs[scope][-1][3]
                    print(
                        f"{label:<13} --verify {scope:<10} {wall[scope]:.3f}s ({args.frames / wall[scope]:,.0f} "
                        f"frames/s), {wall[scope] / wall['none']:.2f}x none; CPU {cpu[scope]:.3f}s, "
                        f"{cpu[scope] / cpu['none']:.2f}x none; keys cached {keys}; {counts}",
                        flush=True,
                    )
        finally:
            pds.send_signal(signal.SIGTERM)
            pds.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
