"""What the capture writes depends on the targets that read it; its key must say so."""

from __future__ import annotations

from pathlib import Path

from modelbuild.manifest.load import load_models
from modelbuild.stages import STAGES

MANIFEST = """\
name: rnn
source: {{factory: "models.rnn:build"}}
capture: {{mode: {mode}}}
inputs: [{{name: x, shape: [1, 5, 4]}}]
targets: {targets}
"""


def capture_params(tmp_path: Path, mode: str, targets: str) -> dict:
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "rnn.py").write_text("def build():\n    pass\n")
    (tmp_path / "m.yaml").write_text(MANIFEST.format(mode=mode, targets=targets))
    [model] = load_models([tmp_path / "m.yaml"], tmp_path)
    return STAGES.get("capture").params(model)


def test_adding_core_ml_to_an_export_capture_changes_its_key(tmp_path: Path) -> None:
    # An export capture of recurrent layers saves a trace too when Core ML reads it
    # (coremltools cannot convert their torch.export graph): a capture cached for ONNX alone
    # has no trace, so it must not be reused once Core ML is added.
    onnx_only = capture_params(tmp_path, "export", "{onnx: {}}")
    with_coreml = capture_params(tmp_path, "export", "{onnx: {}, coreml: {}}")
    assert "recurrent_trace" not in onnx_only
    assert with_coreml["recurrent_trace"] is True


def test_a_trace_capture_is_the_same_for_every_target(tmp_path: Path) -> None:
    assert capture_params(tmp_path, "trace", "{onnx: {}}") == capture_params(tmp_path, "trace", "{onnx: {}, coreml: {}}")
