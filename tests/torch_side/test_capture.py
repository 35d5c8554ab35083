"""Capture modes on small models: script with a bias-less convolution, export of an LSTM."""

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


def nobias():
    torch.manual_seed(0)
    return NoBias()


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
"""


def test_script_without_bias_and_export_of_lstm_convert(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "small.py").write_text(MODELS)
    (tmp_path / "small.yaml").write_text(MANIFESTS)
    result = run_cli(tmp_path, "build", "small.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "build" / "report.json").read_text())
    nobias = report["models"]["nobias"]["stages"]["capture"]["notes"]
    assert any("bias-less convolution" in n for n in nobias)
    recurrent = report["models"]["recurrent"]["stages"]["capture"]["notes"]
    assert any("recurrent layers" in n for n in recurrent)
    for name in ("nobias", "recurrent"):
        assert (tmp_path / "build" / name / f"{name}.mlpackage" / "Manifest.json").is_file()
