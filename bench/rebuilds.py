"""Side-by-side timings of the builds users wait for, measured in one run on this machine.

    python bench/rebuilds.py            # full build, no-op, metadata-only, weights-only, hashing

Prints each figure and the ratios the project promises: a no-op build in well under a second
(no torch, no coremltools), a metadata-only rebuild at a fraction of that model's full build,
new weights hashed at several GB/s and unchanged weights never re-read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(cwd: Path, *args: str) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "modelbuild", *args], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"modelbuild {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def best_of(count: int, cwd: Path, *args: str) -> float:
    return min(timed(cwd, *args) for _ in range(count))


def hashing(size_gb: float) -> None:
    sys.path.insert(0, str(REPO))
    from modelbuild.store.hashing import hash_file
    from modelbuild.store.state import StateDB

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.bin"
        chunk = os.urandom(64 * 1024 * 1024)
        with open(path, "wb") as handle:
            for _ in range(int(size_gb * 1024 / 64)):
                handle.write(chunk)
        size = path.stat().st_size
        old = time.time() - 60
        os.utime(path, (old, old))
        hash_file(path)  # warm the page cache so disk speed does not decide
        started = time.perf_counter()
        hash_file(path)
        blake = time.perf_counter() - started
        started = time.perf_counter()
        with open(path, "rb") as handle:
            digest = hashlib.sha256()
            for block in iter(lambda: handle.read(16 * 1024 * 1024), b""):
                digest.update(block)
        sha = time.perf_counter() - started
        db = StateDB(Path(tmp) / "state.sqlite")
        db.file_digest(path)
        started = time.perf_counter()
        db.file_digest(path)
        cached = time.perf_counter() - started
        print(
            f"hash {size / 1e9:.2f} GB new weights: blake3 {size / blake / 1e9:.2f} GB/s, sha256 {size / sha / 1e9:.2f} GB/s "
            f"(blake3 {sha / blake:.1f}x faster); unchanged weights: {cached * 1000:.2f} ms, {db.bytes_hashed - size} bytes re-read"
        )
        db.close()
        snapshots(path, Path(tmp), blake)


def snapshots(path: Path, tmp: Path, hash_seconds: float) -> None:
    """New weights are copied into the store as they are hashed (so a stage computes from the
    hashed bytes); what that costs next to hashing alone, and what an unchanged file costs."""
    from modelbuild.store.objects import ObjectStore
    from modelbuild.store.snapshots import Snapshots
    from modelbuild.store.state import StateDB

    size = path.stat().st_size
    store = ObjectStore(tmp / "cache")
    db = StateDB(tmp / "cache" / "state.sqlite")
    taker = Snapshots(store, db)
    started = time.perf_counter()
    taker.take(path)
    new = time.perf_counter() - started
    started = time.perf_counter()
    taker.take(path)
    unchanged = time.perf_counter() - started
    db.close()
    print(
        f"snapshot {size / 1e9:.2f} GB new weights (copy into the store + blake3): {new:.2f} s, {size / new / 1e9:.2f} GB/s "
        f"({new / hash_seconds:.1f}x hashing alone); unchanged weights: {unchanged * 1000:.2f} ms"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(REPO / "manifests", root / "manifests", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "modelbuild.toml", root / "modelbuild.toml")
        full = timed(root, "build", "manifests", "--no-bench")
        noop = best_of(5, root, "build", "manifests", "--no-bench")
        lstm_full = timed(root, "build", "manifests", "--no-bench", "--model", "lstm", "--force", "-j", "1")
        manifest = root / "manifests" / "lstm.toml"
        text = manifest.read_text()
        metadata_runs = []
        for index in range(3):
            manifest.write_text(text.replace("A tiny LSTM sequence classifier", f"An LSTM classifier, edit {index}"))
            metadata_runs.append(timed(root, "build", "manifests", "--no-bench", "--model", "lstm"))
        metadata = min(metadata_runs)
        weights = root / "manifests" / "weights" / "lstm.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 0x01  # one changed bit in the last value
        weights.write_bytes(bytes(data))
        weights_only = timed(root, "build", "manifests", "--no-bench")
        print(f"full build of the examples (empty cache, -j 2): {full:.2f} s")
        print(f"no-op build of the examples:                     {noop:.3f} s   ({full / noop:.0f}x faster than full; target <= 0.4 s)")
        print(f"full build of lstm alone (--force):              {lstm_full:.2f} s")
        print(f"metadata-only rebuild of lstm:                   {metadata:.3f} s   ({metadata / lstm_full:.1%} of its full build; target <= 10%)")
        print(f"weights-only rebuild (lstm, whole project):      {weights_only:.2f} s   ({weights_only / full:.1%} of the full build)")
    hashing(float(os.environ.get("BENCH_HASH_GB", "1")))


if __name__ == "__main__":
    main()
