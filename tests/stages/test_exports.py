"""Export-stage behaviour that needs no full build: missing extras, lost dynamic axes, paths."""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from modelbuild.errors import StageFailure
from modelbuild.graph.node import StageNode
from modelbuild.stages import STAGES, StageJob
from modelbuild.stages.onnx_export import drop_stack_traces, specialised_axes

SEQUENCE = {"name": "sequence", "kind": "tensor", "dtype": "float32", "shape": [1, {"min": 1, "max": 256, "default": 20}, 8]}


def _graph_with_input(dims: list) -> onnx.ModelProto:
    value = helper.make_tensor_value_info("sequence", TensorProto.FLOAT, dims)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)
    node = helper.make_node("Identity", ["sequence"], ["y"])
    entry = node.metadata_props.add()
    entry.key, entry.value = "pkg.torch.onnx.stack_trace", 'File "/home/someone/models/lstm.py", line 3'
    return helper.make_model(helper.make_graph([node], "g", [value], [out]))


def test_a_flexible_dimension_fixed_by_the_exporter_is_found() -> None:
    assert specialised_axes(_graph_with_input([1, "seq", 8]), [SEQUENCE]) == []
    assert specialised_axes(_graph_with_input([1, 20, 8]), [SEQUENCE]) == ["sequence[1]"]


def test_stack_traces_with_build_machine_paths_are_dropped() -> None:
    proto = _graph_with_input([1, "seq", 8])
    drop_stack_traces(proto)
    assert b"/home/someone" not in proto.SerializeToString()


def test_executorch_target_without_executorch_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelbuild.stages.executorch_export as module

    monkeypatch.setattr(module, "missing_module", lambda name, extra: f"{name} is not installed: pip install 'modelbuild[{extra}]'")
    node = StageNode("m", "executorch.export", {"targets": {"executorch": {"backend": "xnnpack"}}}, {}, (), {})
    job = StageJob(node, {}, tmp_path, logging.getLogger("test"))
    with pytest.raises(StageFailure, match=r"needs ExecuTorch: executorch is not installed: pip install 'modelbuild\[executorch\]'"):
        STAGES.get("executorch.export")().run(job)
