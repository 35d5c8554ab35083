"""Dask ``--scheduler local:2`` against ``-j 1`` on independent models, side by side.

    python bench/cluster.py [--model NAME ...] [--rounds 1]

Copies the example project once per configuration and builds the chosen independent models
(default: four small ones) with ``--force --no-bench`` and ``-j 1``, then with
``--scheduler local:2`` (the cluster's start-up included), alternating when ``--rounds`` > 1.
Prints the medians and the speed-up, and checks that both produced the same artifacts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from modelbuild.store.hashing import hash_tree  # noqa: E402
from tests.conftest import copy_examples  # noqa: E402

MODELS = ["rmsnorm", "smooth", "classifier", "segmenter"]  # independent, of similar size (lstm alone would be the critical path)


def build(root: Path, args: list[str]) -> float:
    env = {**os.environ, "MODELBUILD_FASTPATH": "0"}
    env.pop("MODELBUILD_REMOTE", None)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "modelbuild", "build", "manifests", *args], cwd=root, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"build failed ({' '.join(args)}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed


def artifacts(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root / "build")): hash_tree(p) for p in sorted((root / "build").glob("*/*")) if p.name != "logs"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help=f"models to build (default: {', '.join(MODELS)})")
    parser.add_argument("--rounds", type=int, default=1)
    options = parser.parse_args()
    selection = [arg for name in (options.model or MODELS) for arg in ("--model", name)] + ["--no-bench", "--force"]
    work = Path(tempfile.mkdtemp(prefix="modelbuild-bench-cluster-"))
    try:
        serial, pool, cluster = copy_examples(work / "serial"), copy_examples(work / "pool"), copy_examples(work / "cluster")
        times: dict[str, list[float]] = {"-j 1": [], "-j 2": [], "local:2": []}
        for _ in range(options.rounds):
            times["-j 1"].append(build(serial, [*selection, "-j", "1"]))
            times["-j 2"].append(build(pool, [*selection, "-j", "2"]))
            times["local:2"].append(build(cluster, [*selection, "--scheduler", "local:2"]))
        one, local, two = (statistics.median(times[k]) for k in ("-j 1", "-j 2", "local:2"))
        print(f"models: {', '.join(options.model or MODELS)} on {os.cpu_count()} cores, {options.rounds} round(s)")
        print(f"-j 1 (process pool):  {one:7.1f} s")
        print(f"-j 2 (process pool):  {local:7.1f} s ({one / local:.2f}x)")
        print(f"--scheduler local:2:  {two:7.1f} s ({one / two:.2f}x over -j 1; LocalCluster start-up included)")
        same = artifacts(serial) == artifacts(cluster) == artifacts(pool)
        print(f"artifacts byte-identical: {same}")
        if not same:
            raise SystemExit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
