"""source.onnx: unsupported nodes named before converting, inputs checked against the graph,
no torchvision stand-in left behind, and the converted module matches ONNX Runtime."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper  # noqa: E402

from modelbuild.errors import Location, UserError  # noqa: E402
from modelbuild.torch_side import onnx_source  # noqa: E402

WHERE = Location("m.yaml", 4, "source.onnx")


def _write(tmp_path: Path, nodes: list, inputs: list, outputs: list, opsets: list | None = None, initializers: list | None = None) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=opsets or [helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _tensor(name: str, dims: list) -> object:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def test_an_unsupported_node_is_named_with_its_op_domain_and_opset(tmp_path: Path) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="first"), helper.make_node("Warp", ["h"], ["y"], name="warp/apply", domain="ai.example")]
    path = _write(tmp_path, nodes, [_tensor("x", [1, 4])], [_tensor("y", [1, 4])], [helper.make_opsetid("", 17), helper.make_opsetid("ai.example", 1)])
    with pytest.raises(UserError) as info:
        onnx_source.to_module(path, WHERE, "m.onnx")
    assert str(info.value) == "m.yaml:4: source.onnx: onnx2torch cannot convert 1 node(s) of m.onnx: node 'warp/apply': Warp (domain ai.example, opset 1)"
    assert "torchvision" not in sys.modules or getattr(sys.modules["torchvision"], "__file__", None)  # no stand-in left behind


def test_the_converted_graph_matches_onnx_runtime_and_returns_outputs_by_name(tmp_path: Path) -> None:
    import numpy as np
    import torch

    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.linspace(-1, 1, 12, dtype=np.float32).tolist())
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="layer.0/MatMul"), helper.make_node("Relu", ["m"], ["scores"], name="act")]
    path = _write(tmp_path, nodes, [_tensor("x", ["batch", 4])], [_tensor("scores", ["batch", 3])], initializers=[weight])
    module = onnx_source.to_module(path, WHERE, "m.onnx")
    reference = onnx_source.runtime_module(path, WHERE, "m.onnx")
    x = torch.randn(5, 4)
    got, want = module(x), reference(x)
    assert list(got) == ["scores"] and torch.allclose(got["scores"], want["scores"], atol=1e-6)
    assert all("/" not in name and "." not in name for name, _ in module.converted.named_children())  # TorchScript-safe names
    torch.jit.trace(module, (x,), strict=False)


def test_the_manifest_inputs_must_be_the_graph_inputs_in_order(tmp_path: Path) -> None:
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    path = _write(tmp_path, nodes, [_tensor("a", [1, "n"]), _tensor("b", [1, "n"])], [_tensor("y", [1, "n"])])
    model = onnx_source.read_model(path, WHERE, "m.onnx")
    onnx_source.check_inputs(model, [{"name": "a"}, {"name": "b"}], lambda field: Location("m.yaml", 7, field), "m.onnx")
    with pytest.raises(
        UserError, match=r"m.yaml:7: inputs: expected the inputs of m.onnx in its order: a \(float32 \[1, 'n'\]\), b \(float32 \[1, 'n'\]\); got b, a"
    ):
        onnx_source.check_inputs(model, [{"name": "b"}, {"name": "a"}], lambda field: Location("m.yaml", 7, field), "m.onnx")


def test_a_file_that_is_not_onnx_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x00not a model")
    with pytest.raises(UserError, match=r"m.yaml:4: source.onnx: cannot read m.onnx as an ONNX model"):
        onnx_source.to_module(path, WHERE, "m.onnx")


def test_weights_in_external_data_are_refused_not_read_from_outside_the_snapshot(tmp_path: Path) -> None:
    import numpy as np

    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.ones(12, dtype=np.float32).tolist())
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL  # a hand-made file can point anywhere
    for key, value in (("location", "../../secret.bin"), ("offset", "0"), ("length", "48")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    _write(tmp_path, nodes, [_tensor("x", [1, 4])], [_tensor("y", [1, 3])], initializers=[weight])
    with pytest.raises(UserError, match=r"expected a self-contained ONNX file, got one whose weights are in external data \(\.\./\.\./secret\.bin\)"):
        onnx_source.to_module(tmp_path / "m.onnx", WHERE, "m.onnx")
