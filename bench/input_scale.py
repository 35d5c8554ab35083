"""An input's per-channel scaling folded into the first convolution, against the multiplication
kept: the same examples built both ways, each runtime timed side by side in one process.

    python bench/input_scale.py [--model classifier --model imageclassifier] [--calls 1500]

Two copies of the example project, one with ``fold_input_scale: false`` for the onnx and
executorch targets; both built (without benchmark stages); then, per model and runtime, the two
artifacts are called in turns on the same input at one thread and the mean times printed with
their ratio (above 1: the fold is faster). Also checks that both compute the same outputs.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import copy_examples  # noqa: E402

TARGETS = ("onnx", "executorch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="examples with a normalized image input (default: classifier, imageclassifier)")
    parser.add_argument("--calls", type=int, default=1500, help="timed calls of each artifact (default 1500)")
    options = parser.parse_args()
    models = options.model or ["classifier", "imageclassifier"]
    work = Path(tempfile.mkdtemp(prefix="modelbuild-bench-input-scale-"))
    try:
        roots = {"folded": copy_examples(work / "folded"), "multiplied": copy_examples(work / "multiplied")}
        for model in models:
            switch_off(roots["multiplied"] / "manifests" / f"{model}.yaml")
        selection = [arg for model in models for arg in ("--model", model)] + [arg for target in TARGETS for arg in ("--target", target)]
        for root in roots.values():
            command = [sys.executable, "-m", "modelbuild", "build", "manifests", *selection, "--no-bench"]
            result = subprocess.run(command, cwd=root, capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"build failed in {root}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        print(f"{'model':<18}{'runtime':<13}{'multiplied ms':>15}{'folded ms':>11}{'ratio':>8}  same outputs")
        for model in models:
            for runtime, suffix, load in (("onnxruntime", "onnx", onnx_call), ("executorch", "pte", executorch_call)):
                calls = {name: load(root / "build" / model / f"{model}.{suffix}") for name, root in roots.items()}
                times, same = timed(calls, options.calls)
                print(f"{model:<18}{runtime:<13}{times['multiplied']:>15.3f}{times['folded']:>11.3f}{times['multiplied'] / times['folded']:>7.2f}x  {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def switch_off(manifest: Path) -> None:
    import yaml

    data = yaml.safe_load(manifest.read_text())
    for target in TARGETS:
        data["targets"][target] = {**(data["targets"].get(target) or {}), "fold_input_scale": False}
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))


def onnx_call(path: Path) -> Callable[[Any], Any]:
    import onnxruntime as ort

    settings = ort.SessionOptions()
    settings.intra_op_num_threads = settings.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), settings, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def executorch_call(path: Path) -> Callable[[Any], Any]:
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(1)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    return lambda x: method.execute([x])[0].numpy()


def timed(calls: dict[str, Callable[[Any], Any]], count: int) -> tuple[dict[str, float], bool]:
    """Mean milliseconds per call, called in turns; and whether the outputs agree to rounding."""
    import numpy as np
    import torch

    torch.manual_seed(0)
    x = torch.rand(1, 3, 224, 224)
    outputs = [np.asarray(call(x)) for call in calls.values()]
    same = bool(np.allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-5))
    for _ in range(50):
        for call in calls.values():
            call(x)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(count):
        for name, call in calls.items():
            started = time.perf_counter()
            call(x)
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.fmean(series) * 1000 for name, series in samples.items()}, same


if __name__ == "__main__":
    main()
