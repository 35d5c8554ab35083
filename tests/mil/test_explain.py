"""The op-level locator: a float16 program whose intermediate overflows is explained down to
the op and the torch module, and keeping that module in float32 (the way out it names) fixes
the program."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

ct = pytest.importorskip("coremltools")

from modelbuild.coreml.convert_args import convert_kwargs  # noqa: E402
from modelbuild.coreml.origins import op_origins  # noqa: E402
from modelbuild.mil.explain import locate  # noqa: E402


def _example_module() -> object:
    """manifests/models/rmsnorm.py under a name of its own: importing it as ``models.rmsnorm``
    would leave a ``models`` package in sys.modules for every later test's own ``models``."""
    path = Path(__file__).resolve().parents[2] / "manifests" / "models" / "rmsnorm.py"
    spec = importlib.util.spec_from_file_location("explain_example_rmsnorm", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _example_module().build  # type: ignore[attr-defined]

OPTIONS = {"format": "mlprogram", "deployment_target": "iOS15", "compute_units": "all", "precision": "float16"}


def convert(folder: Path, **options: object) -> Path:
    model = build().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, torch.randn(1, 16, 32))
        converted = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=(1, 16, 32))], **convert_kwargs(ct, {**OPTIONS, **options}))
    folder.mkdir()
    converted.save(str(folder / "model.mlpackage"))
    (folder / "ops.json").write_text(json.dumps(op_origins(converted)))
    return folder / "model.mlpackage"


def test_an_overflowing_float16_op_is_found_with_its_module_and_the_way_out(tmp_path: Path) -> None:
    x = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0)).numpy()
    explanation = locate(convert(tmp_path / "plain"), {"x": x})
    first = explanation.first
    assert explanation.float16 and first is not None and first.overflow
    assert first.op_type == "mul" and first.module == "norm" and "RMSNorm" in first.origin
    assert first.float32_range[1] > 65504 and first.float16_range[1] == float("inf")
    lines = explanation.lines()
    assert "(float16 overflow: past ±65504)" in lines[0]
    assert "way out: targets.coreml.float32_modules: [norm]" in lines[1]


def test_keeping_the_named_module_in_float32_fixes_the_program(tmp_path: Path) -> None:
    x = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))
    package = convert(tmp_path / "kept", float32_modules=["norm"])
    assert locate(package, {"x": x.numpy()}).first is None
    from modelbuild.mil.program import ProgramRunner

    with torch.no_grad():
        want = build().eval()(x)
    got = next(iter(ProgramRunner(package).run({"x": x.numpy()}).values()))
    np.testing.assert_allclose(got.float().numpy(), want.numpy(), atol=5e-2, rtol=5e-2)


def test_a_float32_program_is_not_blamed_on_float16(tmp_path: Path) -> None:
    explanation = locate(convert(tmp_path / "f32", precision="float32"), {"x": np.zeros((1, 16, 32), np.float32)})
    assert not explanation.float16 and "float16 is not the cause" in explanation.lines()[0]


def test_a_converted_module_that_departs_from_pytorch_is_named_first(tmp_path: Path) -> None:
    from modelbuild.mil.explain import compare_modules, torch_module_outputs

    package = convert(tmp_path / "f32", precision="float32")
    x = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))
    outputs = torch_module_outputs(build().eval(), [x])
    agree = compare_modules(package, {"x": x.numpy()}, outputs)
    assert agree == ["all 3 torch modules whose outputs map to ops of the package agree with PyTorch within tolerance"]
    # A module whose conversion computed something else: it is the one named, not those after it.
    wrong = {**outputs, "norm": outputs["norm"] + 1.0}
    [line] = compare_modules(package, {"x": x.numpy()}, wrong)
    assert line.startswith("first torch module whose converted output departs from PyTorch: norm (op ")


def test_a_damaged_origin_record_costs_the_module_names_only(tmp_path: Path) -> None:
    package = convert(tmp_path / "plain")
    (package.parent / "ops.json").write_text("{not json")
    x = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0)).numpy()
    explanation = locate(package, {"x": x})
    assert explanation.first is not None and explanation.first.overflow and explanation.first.module == ""
    assert "way out: targets.coreml.precision: float32 (the ops' modules are not known for this capture)" in explanation.lines()[1]
