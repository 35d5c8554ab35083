"""ONNX Runtime, ExecuTorch/XNNPACK and TorchScript against PyTorch eager, on the examples.

    python bench/runtimes.py [--runs 100]

Builds a copy of the example project from an empty cache and runs ``modelbuild bench`` on
it, then prints each backend's speed-up over torch eager. Each speed-up is measured side by
side in one process (backend and eager timed in turns, one thread each), so the ratio holds
even when the machine's absolute speed drifts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from examples import bench_report  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="timed runs per backend and shape (default 100)")
    args = parser.parse_args()
    report = bench_report(args.runs)
    print(f"{'model':<11} {'shape':<18} {'backend':<12} {'mean ms':>9} {'torch ms':>9} {'speed-up':>9}")
    for model, entry in sorted(report["models"].items()):
        for stage, record in sorted(entry["stages"].items()):
            if not stage.endswith(".bench") or stage == "torch.bench":
                continue
            for row in record.get("info", {}).get("bench", []):
                print(f"{model:<11} {row['shape']:<18} {row['backend']:<12} {row['mean_ms']:>9.3f} {row['torch_mean_ms']:>9.3f} {row['speedup']:>8.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
