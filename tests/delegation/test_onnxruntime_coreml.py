"""The ONNX Runtime report (its optimizer's fusions, every node's provider) and the static Core
ML estimate (what keeps a program off the Neural Engine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelbuild.delegation.coreml import coreml_delegation, range_inputs


def test_onnxruntime_names_its_fusions_and_providers(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from modelbuild.delegation.onnxruntime import onnxruntime_delegation

    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [weight],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    report = onnxruntime_delegation(path, {"x": np.random.rand(1, 3, 8, 8).astype(np.float32)})
    assert report.share == 1.0 and not report.left_out  # the CPU provider takes every node
    assert report.fused, "ORT_ENABLE_ALL fuses Conv and Relu"
    assert any("Relu" in note for note in report.notes)
    assert "the optimizer made" in report.sentence()


def test_core_ml_estimate_names_what_leaves_the_neural_engine() -> None:
    report = coreml_delegation([("conv", "10"), ("lstm", "10"), ("gather", "10"), ("relu", "10")], float32_ops=1, range_inputs=["tokens"])
    assert report.ops_total == 4 and report.ops_delegated == 1
    assert {item.op for item in report.left_out} == {"lstm", "gather", "float32 operations"}
    assert report.low() and "recurrent layer" in report.sentence()
    assert "tokens" in report.notes[0] and "enumerated shapes" in report.notes[0]
    assert "FLOPs" not in report.sentence()  # a count of operations, never called FLOPs


def test_range_inputs_tell_ranges_from_fixed_and_enumerated_sizes() -> None:
    from modelbuild.coreml.proto import model_pb2

    spec = model_pb2().Model()
    ranged = spec.description.input.add(name="ranged")
    for low, high in ((1, 1), (1, 128)):
        size = ranged.type.multiArrayType.shapeRange.sizeRanges.add()
        size.lowerBound, size.upperBound = low, high
    fixed = spec.description.input.add(name="fixed")
    fixed.type.multiArrayType.shape.extend([1, 3])
    image = spec.description.input.add(name="image")
    image.type.imageType.imageSizeRange.widthRange.lowerBound = 64
    image.type.imageType.imageSizeRange.widthRange.upperBound = -1
    assert range_inputs(spec) == ["ranged", "image"]
