"""``quantize.keep_float``: the modules a pattern names stay float in the int8 model (ONNX
Runtime's QDQ file and the XNNPACK program), and a pattern that names nothing is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from modelbuild.quantize.keep_float import KeepFloat, Unmatched, module_path  # noqa: E402


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU()),
            torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU()),
        )
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Wrapped(torch.nn.Module):
    """The model under the attribute the capture wrapper gives it (torch_side/wrapper.py)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = Net().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


EXAMPLE = (torch.rand(1, 3, 16, 16),)
SAMPLES = [[torch.rand(1, 3, 16, 16)] for _ in range(4)]


def test_patterns_match_the_users_module_names_and_everything_inside() -> None:
    assert module_path("model.features.0") == "features.0" and module_path("model") is None and module_path("") is None
    keep = KeepFloat(["features.0", "head", "blocks.*"])
    assert keep.keeps(["", "model", "model.features", "model.features.0", "model.features.0.0"])  # inside features.0
    assert not keep.keeps(["", "model", "model.features", "model.features.1", "model.features.1.0"])
    assert keep.keeps(["", "model", "model.head"])
    with pytest.raises(Unmatched, match=r"\[2\] 'blocks\.\*' matches no module; modules here include features, head"):
        keep.check()
    nameless = KeepFloat(["head"])
    assert not nameless.keeps([])  # a graph exported without module scopes (the TorchScript-based exporter)
    with pytest.raises(Unmatched, match="names no modules .* remove keep_float"):
        nameless.check()


def _conv_weights(program: object) -> list[bool]:
    """For each convolution of a converted PT2E graph, in order: is its weight int8 (fed by a
    dequantize)?"""
    found = []
    for node in program.graph.nodes:  # type: ignore[attr-defined]
        if node.op == "call_function" and "conv" in str(node.target):
            weight = node.args[1]
            found.append("dequantize" in str(getattr(weight, "target", "")))
    return found


def test_the_xnnpack_program_keeps_the_named_modules_float() -> None:
    pytest.importorskip("executorch")
    from modelbuild.quantize.pt2e import quantize_for_xnnpack

    everything = quantize_for_xnnpack(Wrapped(), EXAMPLE, None, SAMPLES, per_channel=True)
    assert _conv_weights(everything) == [True, True, True]
    kept = quantize_for_xnnpack(Wrapped(), EXAMPLE, None, SAMPLES, per_channel=True, keep_float=["features.0", "head"])
    assert _conv_weights(kept) == [False, True, False]
    with pytest.raises(Unmatched, match="'feature.0' matches no module"):
        quantize_for_xnnpack(Wrapped(), EXAMPLE, None, SAMPLES, per_channel=True, keep_float=["feature.0"])


def test_the_onnx_file_keeps_the_named_modules_float(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import onnx

    from modelbuild.quantize import onnx_int8

    src = tmp_path / "float.onnx"
    torch.onnx.export(Wrapped().eval(), EXAMPLE, dynamo=True, verbose=False, report=False).save(str(src))
    feeds = [{"x": sample[0].numpy()} for sample in SAMPLES]

    def conv_weights_int8(keep: list[str]) -> list[bool]:
        out = tmp_path / "int8.onnx"
        onnx_int8.quantize(src, out, "static", per_channel=True, calibration=feeds, keep_float=keep)
        graph = onnx.load(str(out)).graph
        made_by = {output: node.op_type for node in graph.node for output in node.output}
        return [made_by.get(node.input[1]) == "DequantizeLinear" for node in graph.node if node.op_type == "Conv"]

    assert conv_weights_int8([]) == [True, True, True]
    assert conv_weights_int8(["features.0", "head"]) == [False, True, False]
    with pytest.raises(Unmatched, match="'features.7' matches no module"):
        conv_weights_int8(["features.7"])


MODEL = """\
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
"""

MANIFEST = """\
name: cnn
source: {{factory: "models.cnn:build"}}
inputs: [{{name: x, shape: [1, 3, 16, 16]}}]
targets:
  onnx:
    quantize: {{mode: static, calibration_samples: 4, keep_float: [{onnx}]}}
    validate: {{atol: 0.1, rtol: 0.1}}
  executorch:
    quantize: {{calibration_samples: 4, keep_float: [{executorch}]}}
    validate: {{atol: 0.1, rtol: 0.1}}
validate: {{samples: 2}}
benchmark: {{backends: []}}
"""


@pytest.mark.convert
def test_a_build_keeps_the_named_layers_float_and_a_typo_fails_the_export_with_its_line(tmp_path: Path) -> None:
    pytest.importorskip("executorch")
    pytest.importorskip("onnxruntime")
    import json

    from tests.conftest import run_cli

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "cnn.py").write_text(MODEL)
    (tmp_path / "modelbuild.toml").write_text('cache_dir = "cache"\nout_dir = "build"\n')
    manifest = tmp_path / "cnn.yaml"
    manifest.write_text(MANIFEST.format(onnx='"0"', executorch='"0"'))
    good = run_cli(tmp_path, "build", "cnn.yaml", "--no-bench")
    assert good.returncode == 0, good.stdout + good.stderr
    stages = json.loads((tmp_path / "build" / "report.json").read_text())["models"]["cnn"]["stages"]
    for name in ("onnx.export", "executorch.export"):
        assert any("float kept in 0" in note for note in stages[name]["notes"]), stages[name]

    manifest.write_text(MANIFEST.format(onnx='"1"', executorch='"conv.*"'))
    bad = run_cli(tmp_path, "build", "cnn.yaml", "--no-bench")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    told = bad.stdout + bad.stderr
    assert "cnn.yaml:9: targets.executorch.quantize.keep_float: [0] 'conv.*' matches no module; modules here include 0, 1, 2" in told, told
    assert "[cnn] onnx.export: built" in told  # "1" is the ReLU: a module, though it has nothing to quantise
    assert "Traceback" not in told
