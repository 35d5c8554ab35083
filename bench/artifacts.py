"""How fast each example's artifacts are against eager PyTorch, and int8 against float,
side by side in one run: the figures issue "fast artifacts" is measured by.

    python bench/artifacts.py [--threads 1] [--budget 20] [--model NAME ...]

Copies the example project, sets ``benchmark.threads`` and ``time_budget`` for every model,
runs ``modelbuild bench`` (each backend is timed in turns with torch eager in one process),
and prints, per model and shape: ExecuTorch and ONNX Runtime against eager, the int8 variants
against their float versions, and the delegation sentence of each ExecuTorch program. Goals:
every ExecuTorch program at least as fast as eager, at least 2x on the CNN examples, int8 at
least 1.3x its float version on the runtime that claims it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from modelbuild.delegation.report import from_json  # noqa: E402
from tests.conftest import copy_examples  # noqa: E402

# The onnxsegmenter is the segmenter read from its ONNX file: a CNN, held to the same goal.
CNNS = {"mobilenet", "classifier", "segmenter", "imageclassifier", "onnxsegmenter"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1", help="benchmark.threads: a count, 'cores', or a comma-separated list")
    parser.add_argument("--budget", type=float, default=20.0, help="benchmark.time_budget per bench stage (s)")
    parser.add_argument("--model", action="append", default=[], help="only these models")
    options = parser.parse_args()
    threads = [t if t == "cores" else int(t) for t in options.threads.split(",")]
    work = Path(tempfile.mkdtemp(prefix="modelbuild-bench-artifacts-"))
    try:
        root = copy_examples(work / "project")
        settings = root / "modelbuild.toml"
        threads_toml = "[" + ", ".join(f'"{t}"' if t == "cores" else str(t) for t in threads) + "]"
        text = settings.read_text().replace("benchmark = { runs = 3, warmup = 1 }\n", "")
        bench = f'benchmark = {{ runs = "auto", time_budget = {options.budget}, threads = {threads_toml} }}\n'
        settings.write_text(text.replace("[defaults]\n", f"[defaults]\n{bench}"))
        selection = [arg for name in options.model for arg in ("--model", name)]
        env = {**os.environ, "MODELBUILD_FASTPATH": "0"}
        env.pop("MODELBUILD_REMOTE", None)
        command = [sys.executable, "-m", "modelbuild", "bench", "manifests", *selection, "--keep-going"]
        result = subprocess.run(command, cwd=root, capture_output=True, text=True, env=env)
        if not (root / "build" / "report.json").is_file():
            raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
        report = json.loads((root / "build" / "report.json").read_text())
        print_figures(report)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_figures(report: dict) -> None:
    rows = report["bench"]
    print(f"{'model':<18} {'shape':<22} {'threads':>7} {'executorch':>11} {'onnx':>7} {'vs float':>18}  goal")
    failures = 0
    for row in rows:
        if row["backend"] != "executorch":
            continue
        same = [r for r in rows if r["model"] == row["model"] and r["shape"] == row["shape"] and r["threads"] == row["threads"]]
        onnx = next((r for r in same if r["backend"] == "onnx"), None)
        variant = row["model"] in report["variant_of"]
        base = report["variant_of"].get(row["model"], row["model"])
        if variant:
            gains = ", ".join(f"{r['backend']} {r['vs_float']:.2f}x" for r in same if "vs_float" in r)
            goal = any(r.get("vs_float", 0) >= 1.3 for r in same)
        else:
            gains = ""
            goal = row["speedup"] >= (2.0 if base in CNNS else 1.0)
        failures += 0 if goal else 1
        onnx_text = f"{onnx['speedup']:.2f}x" if onnx else "-"
        print(f"{row['model']:<18} {row['shape']:<22} {row['threads']:>7} {row['speedup']:>10.2f}x {onnx_text:>7} {gains:>18}  {'met' if goal else 'NOT met'}")
    print()
    for name, model in report["models"].items():
        data = model["stages"].get("executorch.export", {}).get("info", {}).get("delegation")
        if data:
            print(f"{name}: {from_json(data).sentence()}")
    print(f"\ngoals not met: {failures}")


if __name__ == "__main__":
    main()
