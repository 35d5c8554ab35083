"""coreml.optimize end to end: each compression step shrinks the package, the compressed
package verifies against the PyTorch reference, the size table reports it, and the
float16-pruning compatibility fix is what makes pruning work on a float16 program."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

MODEL = """\
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 16))
"""

MANIFEST = """\
name: mlp
source: {factory: "models.mlp:build"}
inputs: [{name: x, shape: [{min: 1, max: 4, default: 2}, 512]}]
targets: {coreml: {deployment_target: iOS17}}
validate: {samples: 2, shapes: [default, max]}
benchmark: {backends: []}
variants:
  int8: {targets: {coreml: {optimize: [{quantize: {dtype: int8, granularity: per_channel}}], validate: {atol: 0.01, rtol: 0.05}}}}
  pal4: {targets: {coreml: {optimize: [{palettize: {nbits: 4, mode: kmeans}}], validate: {atol: 0.05, rtol: 0.1}}}}
  pruned: {targets: {coreml: {optimize: [{prune: {sparsity: 0.5}}], validate: {atol: 0.5, rtol: 0.5}}}}
  pruned-raw: {targets: {coreml: {optimize: [{prune: {sparsity: 0.5}}], compat: {float16_pruning: false}, validate: {atol: 0.5, rtol: 0.5}}}}
  only-linear: {targets: {coreml: {optimize: [{quantize: {op_types: [conv]}}]}}}
  fp16: {prepare: {dtype: float16}, targets: {torchscript: {validate: {atol: 0.01, rtol: 0.01}}}}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    root = tmp_path_factory.mktemp("optimize")
    (root / "models").mkdir()
    (root / "models" / "mlp.py").write_text(MODEL)
    (root / "manifests").mkdir()
    (root / "manifests" / "mlp.yaml").write_text(MANIFEST)
    (root / "modelbuild.toml").write_text('cache_dir = "cache"\nout_dir = "build"\n')
    result = run_cli(root, "build", "manifests", "-j", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((root / "build" / "report.json").read_text()), result.stdout


def test_each_step_shrinks_the_package_and_still_verifies(built: tuple[dict, str]) -> None:
    report, _ = built
    sizes = {row["model"]: row for row in report["sizes"]}
    assert sizes["mlp-int8"]["ratio"] < 0.6  # int8 from float16: half, plus scales
    assert sizes["mlp-pal4"]["ratio"] < 0.35  # 4-bit indices and a 16-entry table
    assert sizes["mlp-pruned"]["ratio"] < 0.65  # half the values and a bit mask
    for name in ("mlp-int8", "mlp-pal4", "mlp-pruned"):
        assert sizes[name]["verdict"] == "pass" and sizes[name]["float_from"] == "before optimize"
        assert report["models"][name]["stages"]["coreml.verify"]["info"]["verdict"] == "pass"
    assert sizes["mlp-int8"]["max_abs"] < sizes["mlp-pruned"]["max_abs"]  # int8 is the gentlest


def test_variants_share_the_conversion_with_their_base(built: tuple[dict, str]) -> None:
    report, _ = built
    statuses = [report["models"][m]["stages"]["coreml.convert"]["status"] for m in ("mlp", "mlp-int8", "mlp-pal4", "mlp-pruned")]
    assert statuses.count("built") == 1 and statuses.count("cached") == 3
    assert report["models"]["mlp"]["stages"]["coreml.convert"]["output"] == report["models"]["mlp-int8"]["stages"]["coreml.convert"]["output"]


def test_float16_pruning_fix_is_what_makes_pruning_prune(built: tuple[dict, str]) -> None:
    report, _ = built
    sizes = {row["model"]: row for row in report["sizes"]}
    assert sizes["mlp-pruned-raw"]["ratio"] > 1.0  # coremltools alone: a "sparse" weight bigger than the dense one
    assert sizes["mlp-pruned"]["ratio"] < 0.65


def test_a_step_that_selects_nothing_says_so(built: tuple[dict, str]) -> None:
    report, stdout = built
    notes = report["models"]["mlp-only-linear"]["stages"]["coreml.optimize"]["notes"]
    assert any("changed no weight" in n for n in notes)
    assert "sizes against float" in stdout and "mlp-pal4" in stdout


def test_float16_weights_for_a_torch_side_target_keep_a_float32_interface(built: tuple[dict, str]) -> None:
    report, _ = built
    stages = report["models"]["mlp-fp16"]["stages"]
    assert stages["torchscript.verify"]["info"]["verdict"] == "pass"
    assert 0 < stages["torchscript.verify"]["info"]["outputs"][0]["max_abs"] < 0.01
    assert stages["torchscript.export"]["size"] < 0.6 * (512 * 256 + 256 * 16) * 4  # half of the float32 weights, plus code
    assert stages["capture"]["output"] == report["models"]["mlp"]["stages"]["capture"]["output"]  # dtype is not the capture's
