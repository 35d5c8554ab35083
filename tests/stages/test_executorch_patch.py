"""The proof the weights-only patch of ``executorch.export`` needs: for every example, new
weights give, by patching the previous program, the very bytes a full conversion gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import run_cli

# Examples whose program is patched after new weights. The others convert in full, and the
# test checks why: XNNPACK folds their batch norms into the convolutions (a constant computed
# from weights), or the variant is quantised (scales come from calibration: never recorded).
PATCHED = {"gpt", "lstm", "mobilenet", "textclassifier", "generator", "segmenter", "onnxsegmenter"}
FOLDED = {"classifier", "imageclassifier"}
QUANTISED = {"mobilenet-int8"}


def scale_weights(root: Path, factor: float = 1.01) -> None:
    """New weights for every example: each float tensor times ``factor`` (so weights that
    were equal stay equal, as trained weights that were tied would)."""
    import onnx
    from onnx import numpy_helper
    from safetensors.torch import load_file, save_file

    for path in sorted((root / "manifests" / "weights").glob("*.safetensors")):
        tensors = load_file(str(path))
        save_file({name: (t * factor if t.is_floating_point() else t) for name, t in tensors.items()}, str(path))
    for path in sorted((root / "manifests" / "models").glob("*.onnx")):
        graph = onnx.load(str(path))
        for init in graph.graph.initializer:
            array = numpy_helper.to_array(init)
            if array.dtype.kind == "f":
                init.CopyFrom(numpy_helper.from_array((array * factor).astype(array.dtype), init.name))
        onnx.save(graph, str(path))


def stage_entries(root: Path, stage: str) -> dict[str, dict]:
    """report.json's entry of ``stage`` for every model that has it."""
    report = json.loads((root / "build" / "report.json").read_text())
    return {model: entry["stages"][stage] for model, entry in report["models"].items() if stage in entry["stages"]}


def patched_then_full(built_examples: Path, tmp_path: Path, target: str, stage: str) -> tuple[Path, dict[str, dict], dict[str, dict]]:
    """Every example with new weights, built for ``target`` (patching where it can), then
    again with --force (converting in full): (project, the patched entries, the full ones)."""
    root = tmp_path / "project"
    shutil.copytree(built_examples, root, symlinks=True)
    scale_weights(root)
    patched_run = run_cli(root, "build", "manifests", "--target", target, "--no-bench", "-j", "2")
    assert patched_run.returncode == 0, patched_run.stdout + patched_run.stderr
    patched = stage_entries(root, stage)
    full_run = run_cli(root, "build", "manifests", "--target", target, "--no-bench", "-j", "2", "--force")
    assert full_run.returncode == 0, full_run.stdout + full_run.stderr
    return root, patched, stage_entries(root, stage)


def test_new_weights_patch_every_float_example_to_the_bytes_of_a_full_conversion(built_examples: Path, tmp_path: Path) -> None:
    root, patched, full = patched_then_full(built_examples, tmp_path, "executorch", "executorch.export")
    assert set(patched) == set(full)
    for model, entry in patched.items():
        assert entry["status"] == "built", (model, entry)  # the weights changed: nothing is cached
        assert entry["output"] == full[model]["output"], f"{model}: patched output differs from a full conversion"
        assert entry.get("notes") == full[model].get("notes"), model
        assert bool(entry["info"].get("constants_patched")) == (model in PATCHED), (model, entry["info"])
    assert set(full) == PATCHED | FOLDED | QUANTISED
    for model in FOLDED:
        assert "fused_bn" in _record(root, full[model]["output"])["refused"], model
        assert "fused_bn" in patched[model]["info"]["patch_refused"], model  # the summary says why it converted in full
    for model in PATCHED:
        assert "patch_refused" not in patched[model]["info"], model
    for model in QUANTISED:
        assert not (cache_entry(root, full[model]["output"]) / "constants.json").exists(), model


def cache_entry(root: Path, output: str) -> Path:
    return root / "cache" / "objects" / output[:2] / output


def _record(root: Path, output: str) -> dict:
    return json.loads((cache_entry(root, output) / "constants.json").read_text())
