"""The no-op build against starting Python itself, side by side in one run.

    python bench/noop.py [--rounds 7] [--project PATH]

Builds the examples once (``--no-bench``) in a temporary copy, or uses an already built
project (``--project``, e.g. the repository after ``modelbuild build manifests --no-bench``), then times, in alternating rounds so drift hits
all alike: ``python -c pass``, the no-op build on its fast path (recorded stat signatures,
no graph machinery imported), and the same no-op on the full path (``MODELBUILD_FASTPATH=0``:
plan the graph, decide every stage from the state database, render the summary). When
``dvc`` is on PATH it times ``dvc repro`` of a pipeline of the same shape too. Prints the
medians and the ratios the project promises: the fast path at most 3x Python's start.
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


def timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def dvc_pipeline(root: Path, stages: int) -> Path | None:
    """A dvc project with one stage per modelbuild stage (each copies a file), already run."""
    if shutil.which("dvc") is None:
        return None
    folder = root / "dvc"
    folder.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=folder, check=True)
    (folder / "in0").write_text("0")
    lines = ["stages:"]
    for index in range(stages):
        lines += [f"  s{index}:", f"    cmd: cp in{index} in{index + 1}", f"    deps: [in{index}]", f"    outs: [in{index + 1}]"]
    (folder / "dvc.yaml").write_text("\n".join(lines) + "\n")
    subprocess.run(["dvc", "repro", "-q"], cwd=folder, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--project", type=Path, default=None, help="an already built project (default: build the examples in a temporary copy)")
    options = parser.parse_args()
    rounds = options.rounds
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build = [sys.executable, "-m", "modelbuild", "build", "manifests", "--no-bench"]
        if options.project is not None:
            root = options.project.resolve()
        else:
            shutil.copytree(REPO / "manifests", root / "manifests", ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copyfile(REPO / "modelbuild.toml", root / "modelbuild.toml")
            print("building the examples once (--no-bench) ...", flush=True)
        timed(build, root)
        timed(build, root)  # records the state the fast path compares
        stages = int(subprocess.run(build, cwd=root, capture_output=True, text=True).stdout.split("nothing to do, ")[1].split()[0])
        dvc = dvc_pipeline(Path(tmp), stages)
        commands = {
            "python -c pass": ([sys.executable, "-c", "pass"], root, None),
            "no-op build, fast path": (build, root, None),
            "no-op build, full path": (build, root, {"MODELBUILD_FASTPATH": "0"}),
        }
        if dvc is not None:
            commands["dvc repro (same shape)"] = (["dvc", "repro", "-q"], dvc, None)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(rounds):
            for name, (command, cwd, env) in commands.items():
                times[name].append(timed(command, cwd, env))
        median = {name: statistics.median(values) for name, values in times.items()}
        print(f"\nno-op of {stages} stages, median of {rounds} alternating rounds:")
        for name, value in median.items():
            print(f"  {name:28s} {value * 1000:8.1f} ms")
        python = median["python -c pass"]
        fast, full = median["no-op build, fast path"], median["no-op build, full path"]
        print(f"\nfast path / python start: {fast / python:.2f}x (goal: at most 3x)")
        print(f"fast path / full path:    {fast / full:.2f}x")
        if dvc is not None:
            print(f"fast path / dvc repro:    {fast / median['dvc repro (same shape)']:.2f}x (goal: at most 0.2x)")
        else:
            print("dvc is not installed here: pip install dvc to time `dvc repro` beside it")


if __name__ == "__main__":
    main()
