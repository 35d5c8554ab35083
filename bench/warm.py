"""Warm workers against fresh processes: the rebuilds a training loop waits on.

    python bench/warm.py [--rounds N] [--bench] [--model gpt]

Three fresh copies of the example project with one model (the GPT example by default): one
building with warm workers, one with ``--cold``, and one with ``--cold --force`` after new
weights (a full conversion of every stage, as before weights-only patching: the baseline the
goal was set against), each built once first (the warm copy's first build starts its
server). Then, for each round and interleaved so all see the same machine: new weights (the
same bytes in every copy) and rebuild each; a metadata-only edit and rebuild the warm and cold
copies. Prints the median times, the ratios (the goal: at most 0.20), whether the copies'
artifacts are byte-identical after every round (so a patched program is also checked against
a full conversion), and how long the interpreter alone takes to start: the floor under any
warm figure.
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


def build(root: Path, manifest: str, extra: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "modelbuild", "build", manifest, *extra], cwd=root, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"build failed in {root}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed, result.stdout.strip().splitlines()[-1]


def started_alone() -> float:
    """Seconds for this interpreter to start and exit doing nothing: the floor under any command
    a Python client runs, warm server or not."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def new_weights(root: Path, model: str, round_number: int) -> None:
    from safetensors.torch import load_file, save_file

    path = root / "manifests" / "weights" / f"{model}.safetensors"
    tensors = load_file(str(path))
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] * (1.0 + 0.001 * round_number)
    save_file(tensors, str(path))


def new_description(root: Path, model: str, round_number: int) -> None:
    """A metadata-only edit: the manifest's ``metadata.author``, set or replaced."""
    manifest = root / "manifests" / f"{model}.yaml"
    lines = [line for line in manifest.read_text().splitlines(keepends=True) if not line.startswith("  author: round ")]
    at = next(i for i, line in enumerate(lines) if line.startswith("metadata:"))
    lines.insert(at + 1, f"  author: round {round_number}\n")
    manifest.write_text("".join(lines))


def slowest(root: Path, count: int = 3) -> str:
    """The stages that took longest in the last build, from report.json."""
    import json

    models = json.loads((root / "build" / "report.json").read_text())["models"]
    ran = [(name, entry["seconds"]) for model in models.values() for name, entry in model["stages"].items() if entry.get("status") == "built"]
    return ", ".join(f"{name} {seconds:.1f}s" for name, seconds in sorted(ran, key=lambda item: -item[1])[:count])


def patched(root: Path, model: str) -> str:
    """Which stages the last build patched (new weights in the previous output) rather than converted."""
    import json

    stages = json.loads((root / "build" / "report.json").read_text())["models"][model]["stages"]
    done = [name for name in ("executorch.export", "onnx.export") if stages.get(name, {}).get("info", {}).get("constants_patched")]
    return f"patched: {', '.join(done)}" if done else "nothing patched"


def artifacts(root: Path, model: str) -> dict[str, str]:
    folder = root / "build" / model
    return {p.name: hash_tree(p) for p in sorted(folder.iterdir()) if p.name != "logs"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt", help="the example to rebuild (default: gpt)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each edit (default 3; medians are printed)")
    parser.add_argument("--bench", action="store_true", help="include the benchmark stages (default: --no-bench)")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modelbuild-bench-warm-"))
    env = {**os.environ, "MODELBUILD_FASTPATH": "0", "MODELBUILD_WORKERS": "warm", "MODELBUILD_WORKERS_DIR": str(work / "servers")}
    (work / "servers").mkdir(mode=0o700)
    manifest = f"manifests/{options.model}.yaml"
    extra = [] if options.bench else ["--no-bench"]
    copies = {"cold": copy_examples(work / "cold"), "warm": copy_examples(work / "warm"), "full": copy_examples(work / "full")}
    flags = {"cold": [*extra, "--cold"], "warm": extra, "full": [*extra, "--cold", "--force"]}
    times: dict[tuple[str, str], list[float]] = {}
    identical = True
    try:
        for mode, root in copies.items():
            seconds, line = build(root, manifest, [f for f in flags[mode] if f != "--force"], env)
            print(f"first build, {mode}: {seconds:.1f} s ({line})")
        for round_number in range(1, options.rounds + 1):
            for edit, change in (("weights-only", new_weights), ("metadata-only", new_description)):
                modes = ["cold", "warm", "full"] if edit == "weights-only" else ["cold", "warm"]
                if edit == "metadata-only":
                    change(copies["full"], options.model, round_number)  # built with the next new weights
                for mode in modes if round_number % 2 else modes[::-1]:
                    change(copies[mode], options.model, round_number)
                    seconds, line = build(copies[mode], manifest, flags[mode], env)
                    times.setdefault((edit, mode), []).append(seconds)
                    how = patched(copies[mode], options.model) if edit == "weights-only" else ""
                    print(f"round {round_number}, {edit}, {mode}: {seconds:.2f} s ({line}; {how}; slowest: {slowest(copies[mode])})")
                same = all(artifacts(copies[mode], options.model) == artifacts(copies["cold"], options.model) for mode in modes)
                identical = identical and same
                if not same:
                    print(f"round {round_number}, {edit}: artifacts DIFFER between {' / '.join(modes)}")
        print()
        print(f"{options.model}, {'with' if options.bench else 'without'} benchmark stages, median of {options.rounds} rounds:")
        print(f"{'edit':<15}{'full s':>9}{'cold s':>9}{'warm s':>9}{'warm/cold':>11}{'warm/full':>11}  goal")
        for edit in ("weights-only", "metadata-only"):
            cold, warm = statistics.median(times[(edit, "cold")]), statistics.median(times[(edit, "warm")])
            full = statistics.median(times[(edit, "full")]) if (edit, "full") in times else None
            against = f"{warm / full:>10.2f}×" if full else f"{'-':>11}"
            verdict = "met" if warm / cold <= 0.20 else "NOT met"
            shown = f"{full:.2f}" if full else "-"
            print(f"{edit:<15}{shown:>9}{cold:>9.2f}{warm:>9.2f}{warm / cold:>10.2f}×{against}  ≤ 0.20 of cold: {verdict}")
        print(f"artifacts byte-identical (warm, cold and full conversion) after every round: {identical}")
        floor = statistics.median(started_alone() for _ in range(5))
        cold_metadata = statistics.median(times[("metadata-only", "cold")])
        print(f"a Python interpreter starting and doing nothing: {floor:.2f} s, {floor / cold_metadata:.2f}× the cold metadata-only build")
    finally:
        subprocess.run([sys.executable, "-m", "modelbuild", "workers", "stop"], cwd=copies["warm"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
