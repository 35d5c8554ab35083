"""Each built-in compatibility conversion: the model fails to convert without it (the raw
coremltools error, explained), and with it the package verifies numerically at the flexible
input's min, default and max shapes with the Linux ML-program executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

MODELS = '''\
import torch
import torch.nn.functional as F
from torch import nn


class ResizeToInput(nn.Module):
    """A segmentation head that resizes its output back to the input's H x W."""

    def __init__(self, mode: str = "bilinear") -> None:
        super().__init__()
        self.down = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.mode = mode

    def forward(self, x):
        y = torch.tanh(self.down(x))
        if self.mode == "bilinear":
            return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(y, size=x.shape[-2:], mode="nearest")


class BiaslessConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.relu(self.conv(x))


class Masking(nn.Module):
    """The mask arithmetic of Hugging Face's masking_utils: new_ones/new_zeros with a dtype (one
    of a run-time size, one empty), boolean |, ^ and &, and where with a scalar."""

    def forward(self, x):
        keep = x.new_ones(x.shape[-2:], dtype=torch.bool)
        nothing = x.new_zeros((), dtype=torch.bool)
        mask = ((x[0, 0] > 0) | nothing) ^ (x[0, 1] > 0.5)
        return torch.where(mask & keep, x[0, 2], 0.0)


def masking():
    return Masking()


def resize(mode: str = "bilinear"):
    torch.manual_seed(0)
    return ResizeToInput(mode)


def biasless():
    torch.manual_seed(0)
    return BiaslessConv()
'''

MANIFEST = """\
name: {name}
source: {{factory: "models.compat_models:{factory}", args: {args}}}
capture: {{mode: {mode}}}
inputs:
  - name: x
    shape: [1, 3, {{min: 24, max: 96, default: 40}}, {{min: 24, max: 96, default: 56}}]
targets:
  coreml: {{deployment_target: iOS17, precision: float32{compat}}}
validate: {{shapes: [default, min, max], samples: 1, atol: 0.0001, rtol: 0.0001}}
benchmark: {{backends: []}}
"""

CASES = [  # name, factory, args, capture mode, compat switch, the raw failure
    ("bilinear-trace", "resize", "{mode: bilinear}", "trace", "resize_to_input", "cannot map torch_upsample_bilinear"),
    ("bilinear-export", "resize", "{mode: bilinear}", "export", "resize_to_input", "cannot map torch_upsample_bilinear"),
    ("nearest-trace", "resize", "{mode: nearest}", "trace", "resize_to_input", "cannot map torch_upsample_nearest_neighbor"),
    ("biasless-script", "biasless", "{}", "script", "script_conv_bias", "bias has dtype str"),
    ("masking-trace", "masking", "{}", "trace", "transformers_ops", "'new_ones'"),
    ("masking-export", "masking", "{}", "export", "transformers_ops", "new_ones"),
]


def project(root: Path, compat_off: bool) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "models" / "compat_models.py").write_text(MODELS)
    (root / "manifests").mkdir()
    for name, factory, args, mode, switch, _ in CASES:
        compat = f", compat: {{{switch}: false}}" if compat_off else ""
        (root / "manifests" / f"{name}.yaml").write_text(MANIFEST.format(name=name, factory=factory, args=args, mode=mode, compat=compat))
    (root / "modelbuild.toml").write_text('cache_dir = "cache"\nout_dir = "build"\n')
    return root


@pytest.fixture(scope="module")
def with_compat(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = project(tmp_path_factory.mktemp("with"), compat_off=False)
    result = run_cli(root, "build", "manifests", "-j", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((root / "build" / "report.json").read_text())


@pytest.fixture(scope="module")
def without_compat(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    root = project(tmp_path_factory.mktemp("without"), compat_off=True)
    result = run_cli(root, "build", "manifests", "-j", "2", "--keep-going")
    assert result.returncode == 1, result.stdout + result.stderr
    return json.loads((root / "build" / "report.json").read_text()), result.stderr


# A script capture is frozen in eval mode, which folds a missing bias away: the bias-less
# convolution converts without its compat conversion now (kept for modules freezing refuses).
FAILING = [case for case in CASES if case[0] != "biasless-script"]


@pytest.mark.parametrize("case", FAILING, ids=[c[0] for c in FAILING])
def test_fails_without_the_compat_conversion(without_compat: tuple[dict, str], case: tuple) -> None:
    report, stderr = without_compat
    name, *_, raw = case
    stages = report["models"][name]["stages"]
    failed = {stage: entry for stage, entry in stages.items() if entry["status"] == "failed"}
    assert list(failed) in (["coreml.convert"], ["capture"]), stages
    assert raw in next(iter(failed.values()))["error"]


def test_a_frozen_script_capture_converts_a_bias_less_convolution_even_without_it(without_compat: tuple[dict, str]) -> None:
    verify = without_compat[0]["models"]["biasless-script"]["stages"]["coreml.verify"]
    assert verify["info"]["verdict"] == "pass", verify


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_verifies_at_min_default_and_max_with_it(with_compat: dict, case: tuple) -> None:
    name = case[0]
    verify = with_compat["models"][name]["stages"]["coreml.verify"]
    assert verify["status"] == "built" and verify["info"]["verdict"] == "pass", verify
    shapes = {c["shape"] for c in verify["info"].get("cases", [])} if verify["info"].get("cases") else None
    assert verify["info"]["samples"] >= 3  # one sample at each of default, min and max
    assert max(o["max_abs"] for o in verify["info"]["outputs"]) < 1e-4
    if shapes is not None:
        assert len(shapes) == 3


def test_the_docs_list_every_compat_conversion() -> None:
    from modelbuild.coreml.compat.docs import PAGE, render

    assert PAGE.read_text(encoding="utf-8") == render()
