"""metadata.classes on a model that is not a classifier: never dropped silently. Core ML keeps
them as user-defined metadata, ONNX as a metadata property, and the summary says where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytest.importorskip("torch")

MODEL = """
import torch


def build():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3)
"""

MANIFEST = """\
name: scorer
source: {factory: "models.scorer:build"}
inputs:
  - {name: x, shape: [1, 4]}
metadata:
  classes: [low, mid, high]
targets:
  coreml: {precision: float32}
  onnx: {}
benchmark: {backends: []}
"""


def test_classes_without_a_classifier_are_kept_and_reported(tmp_path: Path) -> None:
    import onnx

    from modelbuild.coreml.package_io import read_spec

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "scorer.py").write_text(MODEL)
    (tmp_path / "scorer.yaml").write_text(MANIFEST)
    result = run_cli(tmp_path, "build", "scorer.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    spec = read_spec(tmp_path / "build" / "scorer" / "scorer.mlpackage")
    assert json.loads(spec.description.metadata.userDefined["classes"]) == ["low", "mid", "high"]
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "build" / "scorer" / "scorer.onnx")).metadata_props}
    assert json.loads(props["classes"]) == ["low", "mid", "high"]
    stages = json.loads((tmp_path / "build" / "report.json").read_text())["models"]["scorer"]["stages"]
    assert any("stored as the user-defined metadata 'classes'" in note and "metadata.classifier" in note for note in stages["coreml.package"]["notes"])
