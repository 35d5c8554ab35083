"""The proof the weights-only patch of ``onnx.export`` needs: for every example, new weights
give, by filling the previous translated graph, the very bytes a full export gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import run_cli
from tests.stages.test_executorch_patch import scale_weights

# Examples whose graph is filled with the new weights. The quantised variant exports in full
# (its scales come from calibration), and the test checks that it keeps no record.
PATCHED = {"classifier", "generator", "gpt", "imageclassifier", "lstm", "mobilenet", "rmsnorm", "textclassifier", "segmenter", "onnxsegmenter"}
QUANTISED = {"mobilenet-int8"}
UNCHANGED = {"smooth"}  # its weights are made by its code, not read from a file: nothing to rebuild


def onnx_stages(root: Path) -> dict[str, dict]:
    report = json.loads((root / "build" / "report.json").read_text())
    return {model: stages["onnx.export"] for model, stages in ((m, v["stages"]) for m, v in report["models"].items()) if "onnx.export" in stages}


def test_new_weights_patch_every_example_to_the_bytes_of_a_full_export(built_examples: Path, tmp_path: Path) -> None:
    root = tmp_path / "project"
    shutil.copytree(built_examples, root, symlinks=True)
    scale_weights(root)

    patched_run = run_cli(root, "build", "manifests", "--target", "onnx", "--no-bench", "-j", "2")
    assert patched_run.returncode == 0, patched_run.stdout + patched_run.stderr
    patched = onnx_stages(root)
    full_run = run_cli(root, "build", "manifests", "--target", "onnx", "--no-bench", "-j", "2", "--force")
    assert full_run.returncode == 0, full_run.stdout + full_run.stderr
    full = onnx_stages(root)

    assert set(patched) == set(full)
    for model, entry in patched.items():
        assert entry["status"] == ("cached" if model in UNCHANGED else "built"), (model, entry)
        assert entry["output"] == full[model]["output"], f"{model}: patched output differs from a full export"
        assert entry.get("notes") == full[model].get("notes"), model
        assert bool(entry["info"].get("constants_patched")) == (model in PATCHED), (model, entry["info"])
    assert set(full) == PATCHED | QUANTISED | UNCHANGED
    for model in QUANTISED:
        assert not (_entry(root, full[model]["output"]) / "constants.json").exists(), model


def _entry(root: Path, output: str) -> Path:
    return root / "cache" / "objects" / output[:2] / output
