"""Compressed and quantised artifacts against their float versions, on the mobilenet example.

    python bench/compression.py [--runs 100]

Builds a copy of the example project's mobilenet manifest (the float model and its int8,
palettized and pruned variants) from an empty cache, runs ``modelbuild bench`` on it, and
prints per artifact: its size against the float artifact, its verification error against
the PyTorch reference, and (where the runtime runs here) its speed-up over the float
artifact. Speed-ups are a ratio of ratios, each measured against torch eager in the same
process run, so machine drift between the two runs cancels out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from examples import bench_report  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="timed runs per backend (default 100)")
    args = parser.parse_args()
    report = bench_report(args.runs, "manifests/mobilenet.yaml")
    speed = {(r["model"], r["backend"]): r.get("vs_float") for r in report["bench"]}
    print(f"{'artifact':<32} {'size':>9} {'float':>9} {'size ratio':>10} {'max abs err':>11} {'vs float':>9}")
    for row in report["sizes"]:
        name = f"{row['model']} · {row['target']}"
        faster = speed.get((row["model"], row["target"]))
        print(
            f"{name:<32} {row['size'] / 1024:>7.0f}KB {row['float_size'] / 1024:>7.0f}KB {row['ratio']:>10.0%} "
            f"{row['max_abs'] if row['max_abs'] is not None else float('nan'):>11.2g} "
            f"{f'{faster:.2f}×' if faster else 'macOS only' if row['target'] == 'coreml' else '-':>9}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
