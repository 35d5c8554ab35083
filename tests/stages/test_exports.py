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


def test_optimize_for_mobile_runs_torch_s_optimizer_or_says_why_it_cannot(tmp_path: Path) -> None:
    import torch

    from modelbuild.errors import Location
    from modelbuild.stages.torchscript_export import _optimize_for_mobile

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU()).eval()
    example = [torch.randn(1, 3, 8, 8)]
    module = torch.jit.freeze(torch.jit.trace(net, tuple(example)))
    node = StageNode("m", "torchscript.export", {}, {}, (), {})
    job = StageJob(node, {}, tmp_path, logging.getLogger("test"))
    job.where = lambda field: Location("m.yaml", 9, field)
    path = tmp_path / "m.pt"
    try:
        optimized = _optimize_for_mobile(job, module, path, {}, example)
    except StageFailure as exc:
        # This machine's torch 2.13 CPU build has no XNNPACK: the stage must say so, not ship the unoptimized module.
        assert "m.yaml:9: targets.torchscript.optimize_for_mobile: this torch build" in str(exc)
        assert "has no XNNPACK" in str(exc)
        assert not path.exists()
        return
    assert torch.allclose(optimized(*example), net(*example), atol=1e-5)
    assert job.notes[0].startswith("optimize_for_mobile: ")
