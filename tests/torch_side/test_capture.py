"""Capture modes on small models that used to dead-end: script with a bias-less convolution or
BatchNorm training branches, export of an LSTM or of a flexible batch whose default is 1,
channels-last memory format inside forward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytest.importorskip("torch")

MODELS = """
import torch
from torch import nn


class NoBias(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.relu(self.conv(x))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)

    def forward(self, x):
        return self.lstm(x)[0][:, -1]


class Normed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return self.drop(torch.relu(self.bn(self.conv(x))))


class ChannelsLast(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x.contiguous(memory_format=torch.channels_last))
        return torch.relu(y).contiguous(memory_format=torch.channels_last)


class Batch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.softmax(self.fc(x), dim=-1)


def nobias():
    torch.manual_seed(0)
    return NoBias()


def normed():
    torch.manual_seed(0)
    model = Normed()
    model.bn.running_mean.uniform_(-0.5, 0.5)
    return model


def channels_last():
    torch.manual_seed(0)
    return ChannelsLast()


def batch():
    torch.manual_seed(0)
    return Batch()


def recurrent():
    torch.manual_seed(0)
    return Recurrent()
"""

MANIFESTS = """
models:
  - name: nobias
    source: {factory: "models.small:nobias"}
    capture: {mode: script}
    inputs: [{name: x, shape: [1, 3, 16, 16]}]
  - name: recurrent
    source: {factory: "models.small:recurrent"}
    capture: {mode: export}
    inputs: [{name: x, shape: [1, {min: 2, max: 32, default: 8}, 4]}]
  - name: normed
    source: {factory: "models.small:normed"}
    capture: {mode: script}
    inputs: [{name: x, shape: [1, 3, 16, 16]}]
    targets: {coreml: {}, torchscript: {}}
  - name: channels-last
    source: {factory: "models.small:channels_last"}
    inputs: [{name: x, shape: [1, 3, {min: 8, max: 32, default: 16}, 16]}]
    targets: {coreml: {}, onnx: {}, executorch: {}, torchscript: {}}
  - name: prepared-channels-last
    source: {factory: "models.small:nobias"}
    prepare: {channels_last: true}
    inputs: [{name: x, shape: [1, 3, {min: 8, max: 32, default: 16}, 16]}]
    targets: {coreml: {}, onnx: {}, executorch: {}, torchscript: {}}
  - name: batch
    source: {factory: "models.small:batch"}
    capture: {mode: export}
    inputs: [{name: x, shape: [{min: 1, max: 8, default: 1}, 4]}]
    targets: {coreml: {}, onnx: {}, executorch: {}, torchscript: {}}
"""


def test_captures_that_used_to_dead_end_convert_and_verify(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "small.py").write_text(MODELS)
    (tmp_path / "small.yaml").write_text(MANIFESTS)
    result = run_cli(tmp_path, "build", "small.yaml", "--no-bench")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    nobias = report["models"]["nobias"]["stages"]["capture"]["notes"]
    assert any("bias-less convolution" in n for n in nobias)
    recurrent = report["models"]["recurrent"]["stages"]["capture"]["notes"]
    assert any("recurrent layers" in n for n in recurrent)
    prepared = report["models"]["prepared-channels-last"]["stages"]["capture"]["notes"]
    assert "prepare: channels-last weights and 4-D inputs" in prepared
    for name in ("nobias", "recurrent", "normed", "channels-last", "prepared-channels-last", "batch"):
        assert (tmp_path / "build" / name / f"{name}.mlpackage" / "Manifest.json").is_file()
        for stage, entry in report["models"][name]["stages"].items():
            if stage.endswith(".verify"):
                assert entry["info"]["verdict"] == "pass", (name, stage, entry)


def test_tracer_notes_point_at_the_users_line_not_the_librarys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A TracerWarning raised inside an installed package (transformers' masking code does
    this) is reported at the line of the user's model that called into it."""
    import importlib
    import sys

    import torch

    from modelbuild.torch_side.capture import trace

    library = tmp_path / "site-packages" / "fakelib"
    library.mkdir(parents=True)
    (library / "__init__.py").write_text("def length(x):\n    return int(x.shape[-1] * x.sum().item() * 0 + x.shape[-1])\n")
    user = tmp_path / "project" / "usermodel.py"
    user.parent.mkdir()
    user.write_text(
        "import torch\nimport fakelib\n\n\nclass M(torch.nn.Module):\n    def forward(self, x):\n        n = fakelib.length(x)\n        return x * n\n"
    )
    monkeypatch.syspath_prepend(str(library.parent))
    monkeypatch.syspath_prepend(str(user.parent))
    module = importlib.import_module("usermodel")
    try:
        _traced, messages = trace(module.M(), [torch.ones(1, 3)])
    finally:
        sys.modules.pop("usermodel", None)
        sys.modules.pop("fakelib", None)
    assert messages and all(":7: " in m and m.split(":7: ")[0].endswith("usermodel.py") for m in messages), messages


def test_export_of_a_flexible_batch_whose_default_is_one(tmp_path: Path) -> None:
    """torch.export specialises a size of 1: a flexible batch at its default of 1 used to fail
    with 'Constraints violated'. The export sample takes 2 there; the program stays flexible."""
    import torch

    from modelbuild.errors import Location
    from modelbuild.torch_side.capture import export

    class Prepared(torch.nn.Module):
        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return inputs[0].sum(dim=-1, keepdim=True) * 2

    inputs = [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": [{"min": 1, "max": 8, "default": 1}, 4]}]
    program = export(Prepared(), [torch.ones(1, 4)], inputs, lambda field: Location("m.yaml", None, field))
    for batch in (1, 3, 8):
        assert program.module()(torch.ones(batch, 4)).shape == (batch, 1)


class _Masked:
    """Two inputs whose lengths the model multiplies together, so torch.export must find them equal."""

    @staticmethod
    def module() -> object:
        import torch

        class Masked(torch.nn.Module):
            def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
                ids, mask = inputs
                return (ids * mask).sum(-1)

        return Masked()


def _text_inputs(second: dict) -> list[dict]:
    return [
        {"name": "input_ids", "kind": "tensor", "dtype": "int32", "shape": [1, {"min": 2, "max": 64, "default": 8}]},
        {"name": "attention_mask", "kind": "tensor", "dtype": "int32", "shape": [1, second]},
    ]


def test_export_failure_names_the_inputs_and_says_to_share_a_dimension() -> None:
    import torch

    from modelbuild.torch_side.capture import dynamic_shapes, export_failure

    inputs = _text_inputs({"min": 2, "max": 64, "default": 8})
    sample = (torch.ones(1, 8, dtype=torch.int32), torch.ones(1, 8, dtype=torch.int32))
    with pytest.raises(Exception) as info:
        torch.export.export(_Masked.module(), sample, dynamic_shapes={"inputs": dynamic_shapes(inputs)}, strict=False)
    message = export_failure(info.value, inputs)
    assert message.startswith("Constraints violated (attention_mask_1)!")
    assert "attention_mask.shape[1] and input_ids_1 = input_ids.shape[1] must always be equal" in message
    assert "torch suggests: attention_mask_1 = input_ids_1" in message
    assert "declare it under dims" in message


def test_a_shared_dimension_is_one_torch_export_dim() -> None:
    import torch

    from modelbuild.torch_side.capture import dynamic_shapes

    named = {"min": 2, "max": 64, "default": 8, "name": "seq"}
    inputs = [{**i, "shape": [1, named]} for i in _text_inputs(named)]
    spec = dynamic_shapes(inputs)
    assert spec[0][1] is spec[1][1] and spec[0][1].__name__ == "seq"
    sample = (torch.ones(1, 8, dtype=torch.int32), torch.ones(1, 8, dtype=torch.int32))
    program = torch.export.export(_Masked.module(), sample, dynamic_shapes={"inputs": spec}, strict=False)
    out = program.module()(torch.ones(1, 5, dtype=torch.int32), torch.ones(1, 5, dtype=torch.int32))
    assert out.tolist() == [5]


def test_a_range_torch_export_cannot_keep_flexible_fails_with_a_reason_not_an_assertion() -> None:
    """{min: 1, max: 2}: torch.export starts ranges at 2, and Dim(min=2, max=2) raised a bare
    AssertionError inside torch (found by an adversarial run)."""
    from modelbuild.errors import StageFailure
    from modelbuild.torch_side.capture import dynamic_shapes

    inputs = [{"name": "x", "shape": [{"min": 1, "max": 2, "default": 1}, 4]}]
    with pytest.raises(StageFailure, match=r"input 'x', dimension 0: torch.export cannot keep 1..2 flexible.*max of 3"):
        dynamic_shapes(inputs)
    assert dynamic_shapes([{"name": "x", "shape": [{"min": 1, "max": 3, "default": 1}, 4]}])[0][0].max == 3
    unbounded = [{"name": "x", "shape": [{"min": 1100, "default": 1100}, 4]}]
    with pytest.raises(StageFailure, match=r"min 1100 is above the 1024 that targets.executorch.unbounded_max plans for"):
        dynamic_shapes(unbounded, unbounded_max=1024)


def test_a_model_writing_into_its_input_is_compared_on_its_own_copy() -> None:
    """Eager ran first and doubled the shared sample in place, so the capture saw another input
    and the check blamed the capture (found by an adversarial run)."""
    import torch

    from modelbuild.torch_side.capture import check_against_eager

    class Doubles(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x.mul_(2.0)
            return x + 1

    inputs = [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": [1, 4]}]
    model = Doubles().eval()
    assert check_against_eager(Doubles().eval(), model, inputs) is None
    assert "differs from eager" in (check_against_eager(lambda x: x + 1, model, inputs) or "")  # a capture that lost the write
