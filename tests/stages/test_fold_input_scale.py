"""``fold_input_scale`` as a user meets it: the classifier example's normalize scaling folded
into its first convolution by both the ONNX and the ExecuTorch stage, said in the build's notes,
and kept as a multiplication when the manifest switches it off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnxscript")
pytest.importorskip("executorch")

from tests.conftest import run_cli  # noqa: E402

STAGES = {"onnx": "onnx.export", "executorch": "executorch.export"}


def _build(root: Path) -> dict[str, list[str]]:
    result = run_cli(root, "build", "manifests", "--model", "classifier", "--target", "onnx", "--target", "executorch", "--no-bench")
    assert result.returncode == 0, result.stdout + result.stderr
    stages = json.loads((root / "build" / "report.json").read_text())["models"]["classifier"]["stages"]
    return {target: stages[stage].get("notes", []) for target, stage in STAGES.items()}


def _first_conv_reads_the_input(root: Path) -> bool:
    import onnx

    graph = onnx.load(str(root / "build" / "classifier" / "classifier.onnx")).graph
    first = next(node for node in graph.node if node.op_type == "Conv")
    return first.input[0] == graph.input[0].name


def test_both_targets_fold_and_say_so_and_the_switch_keeps_the_multiplication(examples: Path) -> None:
    notes = _build(examples)
    for target in STAGES:
        assert f"input scaling folded into the weights of features.0.0 (targets.{target}.fold_input_scale)" in notes[target]
    assert _first_conv_reads_the_input(examples)
    folded_program = (examples / "build" / "classifier" / "classifier.pte").read_bytes()

    manifest = examples / "manifests" / "classifier.yaml"
    text = manifest.read_text()
    assert "  onnx: {opset: 18}\n" in text and "  executorch: {backend: xnnpack}\n" in text
    text = text.replace("  onnx: {opset: 18}\n", "  onnx: {opset: 18, fold_input_scale: false}\n")
    manifest.write_text(text.replace("  executorch: {backend: xnnpack}\n", "  executorch: {backend: xnnpack, fold_input_scale: false}\n"))
    notes = _build(examples)
    assert not any("folded" in note for target in STAGES for note in notes[target])
    assert not _first_conv_reads_the_input(examples)  # a Mul reads it first
    assert (examples / "build" / "classifier" / "classifier.pte").read_bytes() != folded_program
