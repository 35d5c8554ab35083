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
from modelbuild.stages.onnx_export import specialised_axes, strip_debug_metadata

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
    strip_debug_metadata(proto)
    assert b"/home/someone" not in proto.SerializeToString()


def test_the_same_export_gives_the_same_bytes_after_other_exports_in_the_process() -> None:
    """torch.export writes range constraints into the graph's metadata, named by symbols that
    depend on what the process exported before; they are dropped, so a worker that exported
    other models first writes the same file. (Found by a Dask build: the LSTM example,
    placed on a busier worker, differed.)"""
    import torch

    class Sequence(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.lstm = torch.nn.LSTM(8, 16, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x)[0][:, -1]

    def export() -> onnx.ModelProto:
        seq = torch.export.Dim("seq", min=2, max=64)
        return torch.onnx.export(Sequence().eval(), (torch.ones(1, 20, 8),), dynamic_shapes=({1: seq},), dynamo=True, verbose=False).model_proto

    first, second = export(), export()
    assert first.graph.metadata_props != second.graph.metadata_props  # the trap is real on this torch
    strip_debug_metadata(first)
    strip_debug_metadata(second)
    assert list(first.graph.metadata_props) == list(second.graph.metadata_props)
    assert not [p for p in first.graph.metadata_props if p.key.startswith("pkg.torch.export.")]


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
