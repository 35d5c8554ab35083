"""Verification catches real mismatches; benchmarks report figures. Real torch, tiny models."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from modelbuild.checks.cases import Case, generate, model_feeds, write_cases
from modelbuild.errors import StageFailure
from modelbuild.graph.node import StageNode
from modelbuild.stages import STAGES, StageJob
from tests.conftest import run_cli

INPUTS = [{"name": "x", "kind": "tensor", "dtype": "float32", "shape": [1, 8]}]


def _job(
    tmp_path: Path, artifact_model: torch.nn.Module, reference_model: torch.nn.Module, stage: str = "torchscript.verify", on_failure: str = "error"
) -> StageJob:
    reference = tmp_path / "reference"
    reference.mkdir()
    cases = []
    for seed in range(3):
        raw = generate(INPUTS, {"x": [1, 8]}, seed)
        with torch.no_grad():
            expected = [reference_model(*[torch.from_numpy(f) for f in model_feeds(INPUTS, raw)]).numpy()]
        cases.append(Case(f"default-{seed}", "default", raw, expected))
    write_cases(reference, cases, ["y"])
    export = tmp_path / "export"
    export.mkdir()
    torch.jit.save(torch.jit.trace(artifact_model, (torch.zeros(1, 8),)), str(export / "tiny.pt"))
    node = StageNode(
        "tiny",
        stage,
        {"validate": {"atol": 1e-4, "rtol": 1e-4, "on_failure": on_failure}, "fixed_shapes": False},
        {},
        ("tiny:reference", "tiny:torchscript.export"),
        {"inputs": INPUTS, "targets": {"torchscript": {}}, "manifest": "m.yaml"},
    )
    out = tmp_path / "out"
    out.mkdir()
    return StageJob(node, {"reference": reference, "torchscript.export": export}, out, logging.getLogger("test"))


def _linear(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(8, 4).eval()


def test_an_artifact_of_the_same_model_passes(tmp_path: Path) -> None:
    model = _linear(0)
    job = _job(tmp_path, model, model)
    STAGES.get("torchscript.verify")().run(job)
    assert job.info["verdict"] == "pass"
    assert job.info["outputs"][0]["max_abs"] < 1e-6 and job.info["samples"] == 3
    assert json.loads((job.out / "verify.json").read_text())["verdict"] == "pass"


def test_an_artifact_of_a_different_model_fails_with_its_figures(tmp_path: Path) -> None:
    job = _job(tmp_path, _linear(1), _linear(0))
    with pytest.raises(StageFailure, match=r"verification failed at shape\(s\) default: y: max abs"):
        STAGES.get("torchscript.verify")().run(job)
    assert job.info["verdict"] == "fail"
    assert job.info["outputs"][0]["max_abs"] > 1e-2 and job.info["outputs"][0]["cosine"] < 0.99


def test_on_failure_warn_reports_without_failing(tmp_path: Path) -> None:
    job = _job(tmp_path, _linear(1), _linear(0), on_failure="warn")
    STAGES.get("torchscript.verify")().run(job)
    assert job.info["verdict"] == "warn"
    assert any("on_failure: warn" in note for note in job.notes)


BRANCHY = '''import torch


class Branchy(torch.nn.Module):
    """Python control flow on a size: a trace records one branch and silently drops the other."""

    def forward(self, x):
        if x.shape[-1] > 32:
            return x * 2
        return x * 3


def build():
    return Branchy()
'''

MANIFEST = """\
name: branchy
source: {factory: "models.branchy:build"}
capture: {check: %s}
inputs: [{name: x, shape: [1, {min: 16, max: 64, default: 48}]}]
targets: {torchscript: {}}
benchmark: {runs: 2, warmup: 0}
validate: {on_failure: %s}
"""


@pytest.mark.parametrize("on_failure", ["error", "warn"])
def test_a_trace_that_baked_in_a_branch_fails_verification_end_to_end(tmp_path: Path, on_failure: str) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "branchy.py").write_text(BRANCHY)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "branchy.yaml").write_text(MANIFEST % ("false", on_failure))  # capture.check would stop it first
    result = run_cli(tmp_path, "build", "manifests")
    report = json.loads((tmp_path / "build" / "report.json").read_text())["models"]["branchy"]["stages"]
    verify = report["torchscript.verify"]
    if on_failure == "error":
        assert result.returncode == 1, result.stdout + result.stderr
        assert "branchy: torchscript.verify failed: verification failed at shape(s) min" in result.stderr
        assert verify["status"] == "failed"
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert verify["status"] == "built"
    assert verify["info"]["verdict"] == ("fail" if on_failure == "error" else "warn")
    assert verify["info"]["outputs"][0]["max_abs"] > 0.5  # x*2 where eager computes x*3, x in [-1, 1]
    assert "FAIL" in result.stdout or "WARN" in result.stdout  # the figures are in the summary
    if on_failure == "warn":
        assert report["torch.bench"]["status"] == "built" and report["torch.bench"]["info"]["bench"][0]["runs"] == 2


def test_capture_check_fails_a_trace_that_baked_in_a_branch_and_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "branchy.py").write_text(BRANCHY)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "branchy.yaml").write_text(MANIFEST % ("true", "error"))
    result = run_cli(tmp_path, "build", "manifests")
    assert result.returncode == 1
    capture = json.loads((tmp_path / "build" / "report.json").read_text())["models"]["branchy"]["stages"]["capture"]
    assert capture["status"] == "failed"
    assert "the trace capture does not compute what the model computes: at the min shape, output 0 differs from eager" in capture["error"]
    assert "tracer: models/branchy.py:8: Converting a tensor to a Python boolean might cause the trace to be incorrect" in capture["error"]
    assert "tracer: models/branchy.py:8:" in result.stdout  # the summary shows the line


SCALAR_AND_MUTATING = '''import torch


class SumAndWrite(torch.nn.Module):
    """A 0-d output, and a model that writes into its input before reading it."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x):
        x.mul_(2.0)
        y = self.linear(x)
        return y.sum(), y


def build():
    return SumAndWrite()
'''

SCALAR_MANIFEST = """\
name: sumwrite
source: {factory: "models.sumwrite:build"}
inputs: [{name: x, shape: [1, 4]}]
outputs: [{name: total}, {name: y}]
targets: {onnx: {}, torchscript: {}}
"""


def test_a_scalar_output_and_a_model_writing_into_its_input_verify_end_to_end(tmp_path: Path) -> None:
    """Found by an adversarial run: the reference stored a 0-d output as shape (1,), and ran the
    model on the stored sample itself, so the targets were fed the doubled input."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "sumwrite.py").write_text(SCALAR_AND_MUTATING)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "sumwrite.yaml").write_text(SCALAR_MANIFEST)
    result = run_cli(tmp_path, "build", "manifests", "--no-bench")
    assert result.returncode == 0, result.stdout + result.stderr
    stages = json.loads((tmp_path / "build" / "report.json").read_text())["models"]["sumwrite"]["stages"]
    for target in ("onnx", "torchscript"):
        info = stages[f"{target}.verify"]["info"]
        assert info["verdict"] == "pass" and all(o["max_abs"] < 1e-5 and not o["problem"] for o in info["outputs"]), info
